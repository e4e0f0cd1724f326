//! libFuzzer drives the shadow-model interpreter (`shadow::run_input`: the
//! first byte chooses one thread or a ring of threads handing blocks to
//! each other, and the default or the strict allocator; the rest are
//! operations). Every input starts and ends with
//! nothing allocated, so one allocator serves them all.
#![no_main]

use hakmem_core::testing::TestProvider;
use hakmem_core::{shadow, Global};
use libfuzzer_sys::fuzz_target;

static GLOBAL: Global<TestProvider> = Global::new(TestProvider::new());
static STRICT: Global<TestProvider> = Global::new(TestProvider::new());

fuzz_target!(|data: &[u8]| {
    // Read when STRICT makes its first heap (strict mode is fixed after).
    STRICT.options().strict.store(true, core::sync::atomic::Ordering::Relaxed);
    shadow::run_input(&GLOBAL, &STRICT, data)
});
