//! The heap profiler on Linux: call stacks from libgcc's unwinder, and
//! dumps written to files (the core keeps the records, `hakmem_core::profile`).
//!
//! ```text
//!  HAKMEM_PROF=1 (env.rs) -> start() -> Global::profile_start(HAKMEM_PROF_SAMPLE)
//!  sampled malloc -> LinuxPages::backtrace -> stack() -> _Unwind_Backtrace
//!  exit with HAKMEM_PROF_DUMP=prefix, hakmem_prof_dump(path), prof_dump(path)
//!      -> dump_to(path): path        heap_v2 text + MAPPED_LIBRARIES (jeprof, pprof)
//!                        path.folded  frame;frame;frame bytes (flame graphs)
//! ```
//!
//! Stacks come from `_Unwind_Backtrace` (libgcc), which reads `.eh_frame`:
//! no frame pointers are needed, and Debian builds every library with
//! unwind tables. It finds a frame's unwind entry through
//! `dl_iterate_phdr` and `.eh_frame_hdr`, which allocates nothing (the
//! core still guards against a nested malloc; see `sampling.rs`). When
//! hakmem is a shared object of its own (preloaded or linked dynamically),
//! the leading frames inside it are left out; linked statically, the core
//! leaves out its own frames by count (`sampling.rs`) and the stack starts
//! at the entry frame (`malloc`, `__rust_alloc`).

use core::ffi::{c_char, c_int, c_void, CStr};
use core::sync::atomic::Ordering::Relaxed;
use core::sync::atomic::{AtomicBool, AtomicUsize};
use hakmem_core::message::MessageBuffer;
use hakmem_core::profile::{DumpFormat, DEFAULT_MEAN_BYTES};
use rustix::io::Errno;

/// HAKMEM_PROF: sample allocations.
pub static ENABLED: AtomicBool = AtomicBool::new(false);
/// HAKMEM_PROF_SAMPLE: mean bytes between samples.
pub static MEAN_BYTES: AtomicUsize = AtomicUsize::new(DEFAULT_MEAN_BYTES);
/// HAKMEM_PROF_DUMP: the path prefix of the dump written at exit.
pub static DUMP_PREFIX: spin::Once<Prefix> = spin::Once::new();

/// Longest path accepted (PATH_MAX, with room for the suffixes).
const PATH_BYTES: usize = 4096;

/// A path prefix copied out of the environment.
pub struct Prefix {
    bytes: [u8; PATH_BYTES - 64],
    len: usize,
}

impl Prefix {
    /// The prefix, or None when it is empty or too long.
    pub fn new(value: &[u8]) -> Option<Prefix> {
        let mut prefix = Prefix { bytes: [0; PATH_BYTES - 64], len: value.len() };
        if value.is_empty() || value.len() > prefix.bytes.len() || value.contains(&0) {
            return None;
        }
        prefix.bytes[..value.len()].copy_from_slice(value);
        Some(prefix)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Start sampling if HAKMEM_PROF asked for it (once the environment is read).
pub fn start() {
    if ENABLED.load(Relaxed) && !crate::GLOBAL.profile_start(MEAN_BYTES.load(Relaxed)) {
        crate::write_stderr(b"hakmem: HAKMEM_PROF: no memory for the profiler's tables; not profiling\n");
    }
    if !ENABLED.load(Relaxed) && DUMP_PREFIX.get().is_some() {
        crate::write_stderr(b"hakmem: HAKMEM_PROF_DUMP is set but HAKMEM_PROF is off: no profile will be written\n");
    }
}

/// At exit: the dump HAKMEM_PROF_DUMP asked for, as `<prefix>.<pid>.heap`.
pub fn dump_at_exit() {
    let Some(prefix) = DUMP_PREFIX.get() else { return };
    if !crate::GLOBAL.profile().is_on() {
        return;
    }
    let mut path = PathBuffer::new();
    path.push(prefix.as_bytes()).push(b".");
    let mut pid = MessageBuffer::new();
    pid.push_decimal(rustix::process::getpid().as_raw_nonzero().get() as usize);
    path.push(pid.as_bytes()).push(b".heap");
    if let Err(error) = dump_to(path.as_bytes()) {
        let mut m = MessageBuffer::new();
        m.push_str("hakmem: HAKMEM_PROF_DUMP: cannot write ").push_bytes(path.as_bytes());
        m.push_str(" (errno ").push_decimal(error.raw_os_error() as usize).push_str(")\n");
        crate::write_stderr(m.as_bytes());
    }
}

/// Write the heap profile to `path` and its folded stacks to
/// `path.folded`. `Errno::INVAL` when profiling is off or the path is
/// empty or too long.
pub fn dump_to(path: &[u8]) -> Result<(), Errno> {
    if !crate::GLOBAL.profile().is_on() || path.is_empty() || path.len() > PATH_BYTES - 64 || path.contains(&0) {
        return Err(Errno::INVAL);
    }
    let mut heap = PathBuffer::new();
    heap.push(path);
    write_file(heap.as_bytes(), DumpFormat::HeapV2)?;
    let mut folded = PathBuffer::new();
    folded.push(path).push(b".folded");
    write_file(folded.as_bytes(), DumpFormat::Folded)
}

/// One dump into one file (the heap profile followed by the process's
/// mappings, so jeprof symbolises it without the process).
fn write_file(path: &[u8], format: DumpFormat) -> Result<(), Errno> {
    use rustix::fs::{open, Mode, OFlags};
    let mut name = [0u8; PATH_BYTES];
    name[..path.len()].copy_from_slice(path);
    let name = CStr::from_bytes_until_nul(&name).map_err(|_| Errno::INVAL)?;
    let file = open(name, OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC, Mode::from_raw_mode(0o644))?;
    let mut out = BufferedFile { fd: &file, buffer: [0; 16 << 10], len: 0, error: None };
    if !crate::GLOBAL.profile_dump(format, &mut frame_name, &mut |bytes| out.write(bytes)) {
        return Err(Errno::NOMEM);
    }
    if format == DumpFormat::HeapV2 {
        out.write(b"\nMAPPED_LIBRARIES:\n");
        let maps = open(c"/proc/self/maps", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        let mut chunk = [0u8; 4096];
        loop {
            match rustix::io::read(&maps, &mut chunk) {
                Ok(0) => break,
                Ok(n) => out.write(&chunk[..n]),
                Err(Errno::INTR) => continue,
                Err(error) => return Err(error),
            }
        }
    }
    out.flush();
    out.error.map_or(Ok(()), Err)
}

/// A path being put together on the stack.
struct PathBuffer {
    bytes: [u8; PATH_BYTES],
    len: usize,
}

impl PathBuffer {
    fn new() -> Self {
        PathBuffer { bytes: [0; PATH_BYTES], len: 0 }
    }

    /// Append (callers keep the total below `PATH_BYTES`).
    fn push(&mut self, part: &[u8]) -> &mut Self {
        let n = part.len().min(PATH_BYTES - 1 - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&part[..n]);
        self.len += n;
        self
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Writes gathered in a stack buffer; the first error is kept.
struct BufferedFile<'a> {
    fd: &'a rustix::fd::OwnedFd,
    buffer: [u8; 16 << 10],
    len: usize,
    error: Option<Errno>,
}

impl BufferedFile<'_> {
    fn write(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.len == self.buffer.len() {
                self.flush();
            }
            let n = bytes.len().min(self.buffer.len() - self.len);
            self.buffer[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
    }

    fn flush(&mut self) {
        let mut pending = &self.buffer[..self.len];
        while !pending.is_empty() && self.error.is_none() {
            match rustix::io::write(self.fd, pending) {
                Ok(n) => pending = &pending[n..],
                Err(Errno::INTR) => {}
                Err(error) => self.error = Some(error),
            }
        }
        self.len = 0;
    }
}

// ---------------------------------------------------------------------------
// Stacks and their names.

#[repr(C)]
struct DlInfo {
    fname: *const c_char,
    fbase: *mut c_void,
    sname: *const c_char,
    saddr: *mut c_void,
}

#[repr(C)]
struct DlPhdrInfo {
    addr: usize,
    name: *const c_char,
    phdr: *const ElfPhdr,
    phnum: u16,
}

#[repr(C)]
struct ElfPhdr {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
}

const PT_LOAD: u32 = 1;
/// `_URC_NO_REASON`: go on to the next frame; anything else stops.
const CONTINUE: c_int = 0;
const STOP: c_int = 5;

extern "C" {
    fn dladdr(address: *const c_void, info: *mut DlInfo) -> c_int;
    fn dl_iterate_phdr(callback: unsafe extern "C" fn(*mut DlPhdrInfo, usize, *mut c_void) -> c_int, data: *mut c_void) -> c_int;
}

// The unwinder, linked in statically where std does not bring libgcc_s:
// only profiling calls it, and a program need not map libgcc_s for that.
#[cfg_attr(
    all(not(any(feature = "std", test)), target_arch = "x86_64", target_os = "linux", target_env = "gnu"),
    link(name = "gcc_eh", kind = "static", modifiers = "-bundle")
)]
extern "C" {
    fn _Unwind_Backtrace(trace: unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int, data: *mut c_void) -> c_int;
    fn _Unwind_GetIP(context: *mut c_void) -> usize;
}

/// The address range of hakmem's own code when it is a shared object of
/// its own (empty when it is linked into the executable).
static OWN_CODE: spin::Once<(usize, usize)> = spin::Once::new();

fn own_code() -> (usize, usize) {
    *OWN_CODE.call_once(|| {
        struct Search {
            target: usize,
            index: usize,
            range: (usize, usize),
        }
        unsafe extern "C" fn visit(info: *mut DlPhdrInfo, _size: usize, data: *mut c_void) -> c_int {
            // SAFETY: dl_iterate_phdr passes a valid info for each loaded
            // object and our `data`; program headers are `phnum` entries.
            unsafe {
                let search = &mut *(data as *mut Search);
                let info = &*info;
                let (mut low, mut high, mut found) = (usize::MAX, 0, false);
                for i in 0..info.phnum as usize {
                    let header = &*info.phdr.add(i);
                    if header.kind == PT_LOAD {
                        let start = info.addr + header.vaddr as usize;
                        let end = start + header.memsz as usize;
                        (low, high) = (low.min(start), high.max(end));
                        found |= (start..end).contains(&search.target);
                    }
                }
                // The first object is the executable: code there is not
                // hakmem's alone.
                if found && search.index > 0 {
                    search.range = (low, high);
                }
                search.index += 1;
                found as c_int
            }
        }
        let mut search = Search { target: own_code as *const () as usize, index: 0, range: (0, 0) };
        // SAFETY: a valid callback and the data it expects.
        unsafe { dl_iterate_phdr(visit, &mut search as *mut Search as *mut c_void) };
        search.range
    })
}

/// The calling thread's return addresses, innermost first, leaving out
/// this function, the `skip` frames of its callers, and then the frames
/// inside hakmem's own shared object.
#[inline(never)]
pub fn stack(frames: &mut [usize], skip: usize) -> usize {
    struct Walk<'a> {
        frames: &'a mut [usize],
        depth: usize,
        skip: usize,
        own: (usize, usize),
    }
    unsafe extern "C" fn visit(context: *mut c_void, data: *mut c_void) -> c_int {
        // SAFETY: _Unwind_Backtrace passes a valid context for each frame
        // and our `data`.
        unsafe {
            let walk = &mut *(data as *mut Walk);
            let ip = _Unwind_GetIP(context);
            if walk.skip > 0 {
                walk.skip -= 1;
                return CONTINUE;
            }
            if walk.depth == 0 && (walk.own.0..walk.own.1).contains(&ip) {
                return CONTINUE;
            }
            if ip == 0 || walk.depth == walk.frames.len() {
                return STOP;
            }
            walk.frames[walk.depth] = ip;
            walk.depth += 1;
            CONTINUE
        }
    }
    let mut walk = Walk { frames, depth: 0, skip: skip + 1, own: own_code() };
    // SAFETY: a valid callback and the data it expects.
    unsafe { _Unwind_Backtrace(visit, &mut walk as *mut Walk as *mut c_void) };
    walk.depth
}

/// A frame's name for folded stacks: its symbol, else `object+0xoffset`,
/// else its address. Looked up at the call instruction (return address
/// minus one), as symbolisers do.
fn frame_name(frame: usize, out: &mut MessageBuffer) {
    let mut info = DlInfo { fname: core::ptr::null(), fbase: core::ptr::null_mut(), sname: core::ptr::null(), saddr: core::ptr::null_mut() };
    // SAFETY: dladdr reads the loader's tables and fills `info`; the
    // strings it returns live as long as their object.
    unsafe {
        if dladdr((frame - 1) as *const c_void, &mut info) != 0 {
            if !info.sname.is_null() {
                out.push_bytes(CStr::from_ptr(info.sname).to_bytes());
                return;
            }
            if !info.fname.is_null() {
                let path = CStr::from_ptr(info.fname).to_bytes();
                let base = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
                out.push_bytes(base).push_str("+").push_hex(frame - info.fbase as usize);
                return;
            }
        }
    }
    out.push_hex(frame);
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_dump_fails_with_invalid_input_while_profiling_is_off_and_writes_nothing() {
        let path = std::env::temp_dir().join(format!("hakmem-prof-off-{}.heap", std::process::id()));
        let error = crate::prof_dump(&path).expect_err("profiling is off in this test process");
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{error}");
        assert!(!path.exists());
    }

    #[test]
    fn stacks_start_at_the_caller_and_are_bounded() {
        #[inline(never)]
        fn caller(frames: &mut [usize]) -> usize {
            // Used after the call, so that the call is not a tail call.
            core::hint::black_box(super::stack(frames, 0))
        }
        let mut frames = [0usize; 4];
        let depth = caller(&mut frames);
        assert_eq!(depth, 4, "a test thread has more than 4 frames");
        // The first frame is a return address inside `caller`.
        let start = caller as *const () as usize;
        assert!(frames[0] > start && frames[0] < start + 4096, "{:x?} from caller at {start:#x}", frames);
        let mut one = [0usize; 1];
        assert_eq!(super::stack(&mut one, 1000), 0, "skipping past the end of the stack gives nothing");
    }
}
