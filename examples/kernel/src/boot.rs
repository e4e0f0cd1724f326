//! From qemu's PVH entry to Rust: qemu loads the ELF at its physical
//! addresses and enters `pvh_start` in 32-bit protected mode, paging off
//! (the Xen PVH boot protocol, found through the `.note.Xen` note). We
//! zero .bss, identity-map the first 1 GiB with 2 MiB pages, enter long
//! mode and call `kernel_main(start_info)` on a 64 KiB stack.
//!
//! Also the machine's I/O: COM1 for output, qemu's isa-debug-exit port for
//! the exit status.

core::arch::global_asm!(
    r#"
    .section .note.Xen, "a", @note
    .balign 4
    .long 4                      /* name size: "Xen\0" */
    .long 8                      /* descriptor size */
    .long 18                     /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad pvh_start

    .section .text.boot, "ax"
    .code32
    .global pvh_start
pvh_start:
    cli
    cld
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    shrl $2, %ecx
    xorl %eax, %eax
    rep stosl
    movl $boot_pdpt, %eax
    orl $3, %eax                 /* present, writable */
    movl %eax, boot_pml4
    movl $boot_pd, %eax
    orl $3, %eax
    movl %eax, boot_pdpt
    xorl %ecx, %ecx
1:
    movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax              /* present, writable, 2 MiB page */
    movl %eax, boot_pd(,%ecx,8)
    incl %ecx
    cmpl $512, %ecx
    jne 1b
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x20, %eax              /* PAE */
    movl %eax, %cr4
    movl $0xC0000080, %ecx       /* EFER */
    rdmsr
    orl $0x100, %eax             /* long mode enable */
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax        /* paging, protection */
    movl %eax, %cr0
    lgdt boot_gdt_pointer
    ljmp $0x08, $long_mode

    .code64
long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movabsq $boot_stack_top, %rsp
    movl %ebx, %edi              /* the PVH start_info (physical address) */
    call kernel_main
2:
    hlt
    jmp 2b

    .section .rodata.boot, "a"
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF     /* 64-bit code */
    .quad 0x00CF92000000FFFF     /* data */
boot_gdt_pointer:
    .word boot_gdt_pointer - boot_gdt - 1
    .long boot_gdt

    .section .bss.boot, "aw", @nobits
    .balign 4096
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096
boot_stack:
    .skip 65536
boot_stack_top:
"#,
    options(att_syntax)
);

const COM1: u16 = 0x3f8;
const DEBUG_EXIT: u16 = 0xf4;

fn outb(port: u16, value: u8) {
    // SAFETY: port I/O to qemu's COM1 or debug-exit device; no memory effects.
    unsafe { core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) };
}

fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: port I/O reading COM1's line status; no memory effects.
    unsafe { core::arch::asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack, preserves_flags)) };
    value
}

/// Write bytes to COM1 (qemu's `-serial`).
pub fn serial_write(bytes: &[u8]) {
    for &byte in bytes {
        while inb(COM1 + 5) & 0x20 == 0 {}
        outb(COM1, byte);
    }
}

/// Leave qemu with status `(code << 1) | 1` (isa-debug-exit).
pub fn exit(code: u8) -> ! {
    // SAFETY: qemu's debug-exit port ends the machine; nothing follows.
    unsafe { core::arch::asm!("out dx, eax", in("dx") DEBUG_EXIT, in("eax") code as u32, options(nomem, nostack)) };
    loop {
        // SAFETY: halting with interrupts off stops this CPU for good.
        unsafe { core::arch::asm!("cli; hlt", options(nomem, nostack)) };
    }
}

/// The time-stamp counter (entropy for the allocator's keys).
pub fn rdtsc() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: reads the time-stamp counter; no memory effects.
    unsafe { core::arch::asm!("rdtsc", out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags)) };
    (high as u64) << 32 | low as u64
}

/// The command line qemu passed (`-append`), from the PVH start_info.
pub fn command_line(start_info: usize) -> &'static [u8] {
    const START_INFO_MAGIC: u32 = 0x336e_c578;
    // SAFETY: qemu's PVH loader leaves a start_info (magic, version,
    // flags, module count, module list, command line) at this identity-
    // mapped address, and a NUL-terminated command line where it says.
    unsafe {
        if start_info == 0 || (start_info as *const u32).read() != START_INFO_MAGIC {
            return b"";
        }
        let line = ((start_info + 24) as *const u64).read() as *const u8;
        if line.is_null() {
            return b"";
        }
        let mut len = 0;
        while line.add(len).read() != 0 {
            len += 1;
        }
        core::slice::from_raw_parts(line, len)
    }
}
