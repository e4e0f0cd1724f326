//! Size classes: which block size serves a request, and where it lives.
//!
//! ```text
//!                     small-segments (embedders)     default (hosts)
//! 16-byte steps       16 32 ... 128    (classes 0-7) 16 32 48 64   (0-3)
//! up to SMALL_MAX     8 per doubling: 144 160 ... 256 | 288 ... 512 | 576 ... 1024
//!                                                    4 per doubling: 80 96 112 128 | ... | 1024
//! above SMALL_MAX     4 per doubling: 1280 1536 1792 2048 | ... | LARGE_MAX
//!   size(c) = 2^e + k * 2^e / per_doubling, k = 1..=per_doubling, in each doubling
//! ```
//! Waste bound: a request of `n > 64` bytes gets a block of at most
//! `1.25 * n` bytes (internal waste < 20 % of the block); a request of
//! `n <= 64` wastes less than 16 bytes. The small geometry has finer small
//! classes (as tcmalloc does): small requests, the most numerous, waste
//! about 5 % of their bytes on average where 4 per doubling waste about
//! 8 %, and an arena holds that much more in live blocks (3 points of a
//! 16 MiB arena filled with 8 B-1 KiB blocks). Hosts keep 4: each class
//! more is one more partly used page per thread (8 per doubling cost
//! `larson-2t` 1.28x its peak RSS). Every class size is a multiple of 16,
//! so every block is 16-byte aligned. A page spaces its blocks by the
//! class's stride ([`class_stride`]): the size, or on hosts, for mid classes
//! that are not powers of two, one cache line more (an odd number of lines,
//! so that block starts spread over the cache's sets; at most 5 % of a
//! 1280-byte block, 1 % on average over the mid classes).
//!
//! Tiers: classes up to [`SMALL_MAX`] (1 KiB, the "tiny" tier) live in small
//! pages (64 KiB), up to [`MEDIUM_MAX`] (64 KiB, the "mid" pool) in medium
//! pages (512 KiB), up to [`LARGE_MAX`] (1 MiB) in whole-segment pages;
//! larger requests are huge. (Sizes of the default geometry: config.rs.)

use crate::config::{
    LARGE_MAX, LARGE_PAGE_SHIFT, MEDIUM_MAX, MEDIUM_PAGE_SHIFT, MIN_ALIGN, SMALL_MAX,
    SMALL_PAGE_SHIFT,
};
use static_assertions::const_assert;

/// Number of size classes: up to `LARGE_MAX` (60 in the default geometry).
pub const CLASS_COUNT: usize = class_by_formula(LARGE_MAX) + 1;

/// The three kinds of segment that hold size classes, plus huge mappings.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum SegmentKind {
    Small = 0,
    Medium = 1,
    Large = 2,
    Huge = 3,
}

/// Segment kinds that hold pages of size classes.
pub const PAGED_KINDS: usize = 3;

impl SegmentKind {
    /// log2 of the page size of this kind.
    pub const fn page_shift(self) -> usize {
        match self {
            SegmentKind::Small => SMALL_PAGE_SHIFT,
            SegmentKind::Medium => MEDIUM_PAGE_SHIFT,
            SegmentKind::Large | SegmentKind::Huge => LARGE_PAGE_SHIFT,
        }
    }

    /// The largest block a page of this kind holds (huge: none).
    pub const fn max_block(self) -> usize {
        match self {
            SegmentKind::Small => SMALL_MAX,
            SegmentKind::Medium => MEDIUM_MAX,
            SegmentKind::Large => LARGE_MAX,
            SegmentKind::Huge => 0,
        }
    }
}

/// The largest class in 16-byte steps, and small classes per doubling
/// above it (see the module header).
#[cfg(feature = "small-segments")]
const STEP16_MAX: usize = 128;
#[cfg(feature = "small-segments")]
const SMALL_PER_DOUBLING: usize = 8;
#[cfg(not(feature = "small-segments"))]
const STEP16_MAX: usize = 64;
#[cfg(not(feature = "small-segments"))]
const SMALL_PER_DOUBLING: usize = 4;
/// Classes per doubling above `SMALL_MAX`.
const PER_DOUBLING: usize = 4;

/// Classes of the 16-byte steps, and the first class past `SMALL_MAX`.
const STEP16_CLASSES: usize = STEP16_MAX / 16;
const FIRST_ABOVE_SMALL: usize =
    STEP16_CLASSES + (SMALL_MAX.trailing_zeros() - STEP16_MAX.trailing_zeros()) as usize * SMALL_PER_DOUBLING;

/// A run of doublings: its first class, log2 of the size its first
/// doubling starts from, and classes per doubling.
type Doublings = (usize, usize, usize);
/// The small classes past the 16-byte steps, and those past `SMALL_MAX`.
const SMALL_DOUBLINGS: Doublings = (STEP16_CLASSES, STEP16_MAX.trailing_zeros() as usize, SMALL_PER_DOUBLING);
const ABOVE_SMALL_DOUBLINGS: Doublings = (FIRST_ABOVE_SMALL, SMALL_MAX.trailing_zeros() as usize, PER_DOUBLING);

/// Block size of class `class` (`class < CLASS_COUNT`): a table lookup
/// (the refill and release paths ask on every page switch).
pub const fn class_size(class: usize) -> usize {
    CLASS_SIZES[class] as usize
}

/// [`class_size`] and [`class_stride`] of every class, from
/// [`class_size_by_formula`] and [`stride_of`].
const CLASS_SIZES_AND_STRIDES: ([u32; CLASS_COUNT], [u32; CLASS_COUNT]) = {
    let (mut sizes, mut strides) = ([0u32; CLASS_COUNT], [0u32; CLASS_COUNT]);
    let mut class = 0;
    while class < CLASS_COUNT {
        let size = class_size_by_formula(class);
        sizes[class] = size as u32;
        strides[class] = stride_of(size) as u32;
        class += 1;
    }
    (sizes, strides)
};
const CLASS_SIZES: [u32; CLASS_COUNT] = CLASS_SIZES_AND_STRIDES.0;
const CLASS_STRIDES: [u32; CLASS_COUNT] = CLASS_SIZES_AND_STRIDES.1;

/// Whether mid blocks are spaced an odd number of cache lines apart (see
/// [`class_stride`]): hosts. Embedders' arenas keep every byte for blocks.
const ODD_LINE_STRIDES: bool = cfg!(not(feature = "small-segments"));
const CACHE_LINE: usize = 64;

/// Bytes from one block's start to the next in a page of `class`: its size,
/// or for a mid class that spans an even number of cache lines and is not
/// a power of two, one line more. Blocks spaced a multiple of 512 bytes
/// apart (every mid class is) start in one eighth of the cache's sets, so
/// the first lines of a program's mid blocks, where free reads the marker
/// and programs keep their headers, evict each other while most sets sit
/// idle; an odd number of lines cycles through all of them (a simulation
/// of the `mid` workload's caches reads beyond the L2 far less often).
/// Powers of two keep their size: `aligned_alloc(4096, 4096)` and the like
/// take their blocks as they come. The extra line is the block's too
/// (usable size).
pub const fn class_stride(class: usize) -> usize {
    CLASS_STRIDES[class] as usize
}

/// The stride of a class of `size` bytes (see [`class_stride`]).
const fn stride_of(size: usize) -> usize {
    let even_lines = (size / CACHE_LINE).is_multiple_of(2);
    let padded = ODD_LINE_STRIDES && size > SMALL_MAX && size <= MEDIUM_MAX && even_lines && !size.is_power_of_two();
    if padded {
        size + CACHE_LINE
    } else {
        size
    }
}

/// The size formula: 16-byte steps, then classes per doubling.
const fn class_size_by_formula(class: usize) -> usize {
    if class < STEP16_CLASSES {
        return (class + 1) * 16;
    }
    let (first, base_shift, per_doubling) = if class < FIRST_ABOVE_SMALL { SMALL_DOUBLINGS } else { ABOVE_SMALL_DOUBLINGS };
    let j = class - first;
    let exp = base_shift + j / per_doubling;
    (1 << exp) + (j % per_doubling + 1) * ((1 << exp) / per_doubling)
}

/// Number of size slots of the small classes: sizes up to `SMALL_MAX` in
/// steps of 16 ([`small_slot`]).
pub const SMALL_SLOTS: usize = SMALL_MAX / 16 + 1;

/// The slot of a small request: `(size + 15) / 16`, `size <= SMALL_MAX`.
#[inline(always)]
pub const fn small_slot(size: usize) -> usize {
    (size + 15) >> 4
}

/// The slots whose sizes fall in small class `class`.
pub const fn small_slots_of(class: usize) -> core::ops::Range<usize> {
    let first = if class == 0 { 0 } else { class_size(class - 1) / 16 + 1 };
    first..class_size(class) / 16 + 1
}

/// Class of a request of `size` bytes, `size <= LARGE_MAX` (0 counts as 1):
/// a table lookup up to `MEDIUM_MAX` (the slow malloc path of every mid
/// request takes it), the formula above.
#[inline]
pub const fn class_of(size: usize) -> usize {
    if size <= SMALL_MAX {
        SMALL_CLASSES[small_slot(size)] as usize
    } else if size <= MEDIUM_MAX {
        mid_class_of(size)
    } else {
        class_by_formula(size)
    }
}

/// Class of a request of `SMALL_MAX < size <= MEDIUM_MAX` bytes.
#[inline(always)]
pub const fn mid_class_of(size: usize) -> usize {
    MID_CLASSES[(size - 1) >> MID_STEP_SHIFT] as usize
}

/// The class formula (the inverse of [`class_size`]).
const fn class_by_formula(size: usize) -> usize {
    if size <= STEP16_MAX {
        return if size == 0 { 0 } else { size.div_ceil(16) - 1 };
    }
    let (first, base_shift, per_doubling) = if size <= SMALL_MAX { SMALL_DOUBLINGS } else { ABOVE_SMALL_DOUBLINGS };
    let exp = (usize::BITS - 1 - (size - 1).leading_zeros()) as usize;
    let step_shift = exp - per_doubling.trailing_zeros() as usize;
    first + (exp - base_shift) * per_doubling + ((size - 1 - (1 << exp)) >> step_shift)
}

/// Class of each small slot (sizes in steps of 16 up to `SMALL_MAX`).
const SMALL_CLASSES: [u8; SMALL_SLOTS] = {
    let mut table = [0u8; SMALL_SLOTS];
    let mut slot = 0;
    while slot < SMALL_SLOTS {
        table[slot] = class_by_formula(slot * 16) as u8;
        slot += 1;
    }
    table
};

/// Mid class sizes are multiples of 256 bytes, so every request in
/// `(256 k, 256 (k + 1)]` has one class: `MID_CLASSES[k]`.
const MID_STEP_SHIFT: usize = 8;
const MID_CLASSES: [u8; MEDIUM_MAX >> MID_STEP_SHIFT] = {
    let mut table = [0u8; MEDIUM_MAX >> MID_STEP_SHIFT];
    let mut k = 0;
    while k < table.len() {
        table[k] = class_by_formula((k + 1) << MID_STEP_SHIFT) as u8;
        k += 1;
    }
    table
};

/// Segment kind holding blocks of `class`.
pub const fn kind_of_class(class: usize) -> SegmentKind {
    let size = class_size(class);
    if size <= SMALL_MAX {
        SegmentKind::Small
    } else if size <= MEDIUM_MAX {
        SegmentKind::Medium
    } else {
        SegmentKind::Large
    }
}

/// Checks the whole table at compile time: sizes strictly increase, are
/// 16-byte multiples, waste stays bounded, and the lookup inverts the table.
const fn table_is_valid() -> bool {
    if class_size(CLASS_COUNT - 1) != LARGE_MAX {
        return false;
    }
    let mut c = 0;
    while c < CLASS_COUNT {
        let size = class_size(c);
        if !size.is_multiple_of(MIN_ALIGN) || class_of(size) != c {
            return false;
        }
        if c > 0 {
            let prev = class_size(c - 1);
            if size <= prev || class_of(prev + 1) != c {
                return false;
            }
            // Waste bound: the smallest request landing here is prev + 1.
            if prev >= 64 && size * 4 > (prev + 1) * 5 {
                return false;
            }
            if prev < 64 && size - prev > 16 {
                return false;
            }
        }
        c += 1;
    }
    true
}
const_assert!(table_is_valid());

/// The lookup tables agree with the formula for every size up to `MEDIUM_MAX`.
const fn lookups_match_formula() -> bool {
    let mut size = 0;
    while size <= MEDIUM_MAX {
        if class_of(size) != class_by_formula(size) {
            return false;
        }
        size += 1;
    }
    true
}
const_assert!(lookups_match_formula());
const_assert!(class_size(0) == 16);
const_assert!(class_of(SMALL_MAX) < CLASS_COUNT);
const_assert!(class_size(class_of(SMALL_MAX)) == SMALL_MAX);
const_assert!(class_size(class_of(MEDIUM_MAX)) == MEDIUM_MAX);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mid_strides_are_an_odd_number_of_lines_and_powers_of_two_keep_their_size() {
        for class in 0..CLASS_COUNT {
            let (size, stride) = (class_size(class), class_stride(class));
            assert!(stride.is_multiple_of(MIN_ALIGN), "class {class}: stride {stride}");
            let padded = ODD_LINE_STRIDES && size > SMALL_MAX && size <= MEDIUM_MAX && !size.is_power_of_two();
            if padded {
                assert!(stride > size && stride - size <= CACHE_LINE, "class {class}: stride {stride} for {size}");
                assert!(stride.is_multiple_of(CACHE_LINE) && (stride / CACHE_LINE) % 2 == 1, "class {class}: stride {stride}");
            } else {
                assert_eq!(stride, size, "class {class}");
            }
        }
    }

    #[test]
    fn every_size_maps_to_the_smallest_fitting_class() {
        // Under Miri (the smaller configuration): the sizes around every
        // class boundary and every small size.
        let boundaries = (0..CLASS_COUNT).flat_map(|c| [class_size(c) - 1, class_size(c), class_size(c) + 1]);
        let sizes: std::vec::Vec<usize> =
            if cfg!(miri) { (0..=SMALL_MAX).chain(boundaries).filter(|&s| s <= LARGE_MAX).collect() } else { (0..=LARGE_MAX).collect() };
        for size in sizes {
            let c = class_of(size);
            assert!(c < CLASS_COUNT, "size {size}");
            assert!(class_size(c) >= size.max(1), "size {size} class {c}");
            if c > 0 {
                assert!(class_size(c - 1) < size, "size {size} could use class {}", c - 1);
            }
            if size <= SMALL_MAX {
                assert!(small_slots_of(c).contains(&small_slot(size)), "slot of {size} is not in class {c}'s slots");
            }
        }
    }

    #[test]
    fn small_slots_partition_the_small_sizes_by_class() {
        let mut next = 0;
        for c in 0..=class_of(SMALL_MAX) {
            let slots = small_slots_of(c);
            assert_eq!(slots.start, next, "class {c} leaves a gap");
            assert!(!slots.is_empty(), "class {c} has no slot");
            next = slots.end;
        }
        assert_eq!(next, SMALL_SLOTS);
    }

    #[test]
    fn kinds_follow_tier_bounds() {
        assert_eq!(kind_of_class(class_of(SMALL_MAX)), SegmentKind::Small);
        assert_eq!(kind_of_class(class_of(SMALL_MAX + 1)), SegmentKind::Medium);
        assert_eq!(kind_of_class(class_of(MEDIUM_MAX)), SegmentKind::Medium);
        assert_eq!(kind_of_class(class_of(MEDIUM_MAX + 1)), SegmentKind::Large);
        assert_eq!(kind_of_class(CLASS_COUNT - 1), SegmentKind::Large);
    }
}
