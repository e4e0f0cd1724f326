/work/main/benches/embedded/target/release/deps/rlsf-7320cfaff84afdc7.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/utils.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/flex.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/int.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/tlsf.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/../README.md /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/tlsf-diagram.svg /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/global.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/global/unix.rs

/work/main/benches/embedded/target/release/deps/librlsf-7320cfaff84afdc7.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/utils.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/flex.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/int.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/tlsf.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/../README.md /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/tlsf-diagram.svg /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/global.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/global/unix.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/utils.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/flex.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/int.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/tlsf.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/../README.md:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/tlsf-diagram.svg:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/global.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rlsf-0.2.3/src/global/unix.rs:
