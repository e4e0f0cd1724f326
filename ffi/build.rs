//! Link flags of libhakmem.so: the soname `libhakmem.so.<major>` (what
//! `ffi/install` installs it as), and `-z nodelete` because a loaded hakmem
//! registers a pthread-key destructor and fork handlers that must outlive
//! any dlclose (and blocks it returned may still be freed).
fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets CARGO_PKG_VERSION_MAJOR");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libhakmem.so.{major}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-T,{dir}/hot.ld");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,max-page-size=65536");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,separate-loadable-segments");
        println!("cargo:rerun-if-changed=hot.ld");
    }
}
