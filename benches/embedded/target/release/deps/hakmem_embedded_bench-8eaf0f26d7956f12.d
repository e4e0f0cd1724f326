/work/main/benches/embedded/target/release/deps/hakmem_embedded_bench-8eaf0f26d7956f12.d: src/main.rs Cargo.toml

/work/main/benches/embedded/target/release/deps/libhakmem_embedded_bench-8eaf0f26d7956f12.rmeta: src/main.rs Cargo.toml

src/main.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=
# env-dep:CLIPPY_CONF_DIR
