/work/main/benches/embedded/target/release/deps/const_default-f0391cf382f4c100.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/const-default-1.0.0/src/lib.rs

/work/main/benches/embedded/target/release/deps/libconst_default-f0391cf382f4c100.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/const-default-1.0.0/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/const-default-1.0.0/src/lib.rs:
