/work/main/benches/embedded/target/release/deps/buddy_system_allocator-b519eadcfa9ec245.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/buddy_system_allocator-0.11.0/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/buddy_system_allocator-0.11.0/src/linked_list.rs

/work/main/benches/embedded/target/release/deps/libbuddy_system_allocator-b519eadcfa9ec245.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/buddy_system_allocator-0.11.0/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/buddy_system_allocator-0.11.0/src/linked_list.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/buddy_system_allocator-0.11.0/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/buddy_system_allocator-0.11.0/src/linked_list.rs:
