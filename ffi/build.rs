//! Link flags of libhakmem.so: a stable soname, and `-z nodelete` because a
//! loaded hakmem registers a pthread-key destructor and fork handlers that
//! must outlive any dlclose (and blocks it returned may still be freed).
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libhakmem.so");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
