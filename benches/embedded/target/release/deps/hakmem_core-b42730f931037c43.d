/work/main/benches/embedded/target/release/deps/hakmem_core-b42730f931037c43.d: /work/main/core/src/lib.rs /work/main/core/src/adopt.rs /work/main/core/src/alloc.rs /work/main/core/src/arena.rs /work/main/core/src/bigcache.rs /work/main/core/src/capacity.rs /work/main/core/src/census.rs /work/main/core/src/class.rs /work/main/core/src/config.rs /work/main/core/src/free.rs /work/main/core/src/global.rs /work/main/core/src/guard.rs /work/main/core/src/heap.rs /work/main/core/src/huge.rs /work/main/core/src/learn.rs /work/main/core/src/list.rs /work/main/core/src/locked.rs /work/main/core/src/memory.rs /work/main/core/src/message.rs /work/main/core/src/page.rs /work/main/core/src/profile.rs /work/main/core/src/provider.rs /work/main/core/src/purge.rs /work/main/core/src/remote.rs /work/main/core/src/sampling.rs /work/main/core/src/segment.rs /work/main/core/src/segment_store.rs /work/main/core/src/shared.rs /work/main/core/src/stats.rs /work/main/core/src/strict.rs

/work/main/benches/embedded/target/release/deps/libhakmem_core-b42730f931037c43.rmeta: /work/main/core/src/lib.rs /work/main/core/src/adopt.rs /work/main/core/src/alloc.rs /work/main/core/src/arena.rs /work/main/core/src/bigcache.rs /work/main/core/src/capacity.rs /work/main/core/src/census.rs /work/main/core/src/class.rs /work/main/core/src/config.rs /work/main/core/src/free.rs /work/main/core/src/global.rs /work/main/core/src/guard.rs /work/main/core/src/heap.rs /work/main/core/src/huge.rs /work/main/core/src/learn.rs /work/main/core/src/list.rs /work/main/core/src/locked.rs /work/main/core/src/memory.rs /work/main/core/src/message.rs /work/main/core/src/page.rs /work/main/core/src/profile.rs /work/main/core/src/provider.rs /work/main/core/src/purge.rs /work/main/core/src/remote.rs /work/main/core/src/sampling.rs /work/main/core/src/segment.rs /work/main/core/src/segment_store.rs /work/main/core/src/shared.rs /work/main/core/src/stats.rs /work/main/core/src/strict.rs

/work/main/core/src/lib.rs:
/work/main/core/src/adopt.rs:
/work/main/core/src/alloc.rs:
/work/main/core/src/arena.rs:
/work/main/core/src/bigcache.rs:
/work/main/core/src/capacity.rs:
/work/main/core/src/census.rs:
/work/main/core/src/class.rs:
/work/main/core/src/config.rs:
/work/main/core/src/free.rs:
/work/main/core/src/global.rs:
/work/main/core/src/guard.rs:
/work/main/core/src/heap.rs:
/work/main/core/src/huge.rs:
/work/main/core/src/learn.rs:
/work/main/core/src/list.rs:
/work/main/core/src/locked.rs:
/work/main/core/src/memory.rs:
/work/main/core/src/message.rs:
/work/main/core/src/page.rs:
/work/main/core/src/profile.rs:
/work/main/core/src/provider.rs:
/work/main/core/src/purge.rs:
/work/main/core/src/remote.rs:
/work/main/core/src/sampling.rs:
/work/main/core/src/segment.rs:
/work/main/core/src/segment_store.rs:
/work/main/core/src/shared.rs:
/work/main/core/src/stats.rs:
/work/main/core/src/strict.rs:

# env-dep:CARGO_PKG_VERSION=0.1.0
