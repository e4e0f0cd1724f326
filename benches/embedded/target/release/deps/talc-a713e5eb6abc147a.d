/work/main/benches/embedded/target/release/deps/talc-a713e5eb6abc147a.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/talc-4.4.3/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/talc-4.4.3/src/oom_handler.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/talc-4.4.3/src/ptr_utils.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/talc-4.4.3/src/span.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/talc-4.4.3/src/talc.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/talc-4.4.3/src/talc/llist.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/talc-4.4.3/src/talc/tag.rs

/work/main/benches/embedded/target/release/deps/libtalc-a713e5eb6abc147a.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/talc-4.4.3/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/talc-4.4.3/src/oom_handler.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/talc-4.4.3/src/ptr_utils.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/talc-4.4.3/src/span.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/talc-4.4.3/src/talc.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/talc-4.4.3/src/talc/llist.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/talc-4.4.3/src/talc/tag.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/talc-4.4.3/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/talc-4.4.3/src/oom_handler.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/talc-4.4.3/src/ptr_utils.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/talc-4.4.3/src/span.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/talc-4.4.3/src/talc.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/talc-4.4.3/src/talc/llist.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/talc-4.4.3/src/talc/tag.rs:
