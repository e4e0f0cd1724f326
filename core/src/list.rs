//! Intrusive doubly linked lists of pages and segments.
//!
//! Invariant: `first.is_null() == last.is_null()`, and following `next`
//! from `first` visits every element once, ending at `last`.

use crate::page::Page;
use crate::segment::Segment;
use core::ptr::null_mut;

/// Something with `next` / `prev` links.
pub trait Linked {
    /// # Safety
    /// `this` points to a live element.
    unsafe fn links(this: *mut Self) -> (*mut *mut Self, *mut *mut Self);
}

impl Linked for Page {
    unsafe fn links(this: *mut Self) -> (*mut *mut Self, *mut *mut Self) {
        // SAFETY: the caller passes a live page descriptor; Cell<T> has the
        // layout of T.
        unsafe { ((&raw mut (*this).next).cast(), (&raw mut (*this).prev).cast()) }
    }
}

impl Linked for Segment {
    unsafe fn links(this: *mut Self) -> (*mut *mut Self, *mut *mut Self) {
        // SAFETY: the caller passes a live segment header.
        unsafe { (&raw mut (*this).next, &raw mut (*this).prev) }
    }
}

/// A list of elements linked through their own `next` / `prev` fields.
pub struct List<T: Linked> {
    pub first: *mut T,
    pub last: *mut T,
}

impl<T: Linked> List<T> {
    pub const fn new() -> Self {
        List { first: null_mut(), last: null_mut() }
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_null()
    }

    /// # Safety
    /// `item` is live and in no list.
    pub unsafe fn push_front(&mut self, item: *mut T) {
        // SAFETY: per the contract; first is null or an element.
        unsafe { self.insert_between(item, null_mut(), self.first) }
    }

    /// # Safety
    /// `item` is live and in no list.
    pub unsafe fn push_back(&mut self, item: *mut T) {
        // SAFETY: per the contract; last is null or an element.
        unsafe { self.insert_between(item, self.last, null_mut()) }
    }

    /// Link `item` between adjacent elements `prev` and `next` (null: the
    /// list's end on that side).
    ///
    /// # Safety
    /// `item` is live and in no list; `prev` and `next` are adjacent
    /// elements of this list or null ends.
    unsafe fn insert_between(&mut self, item: *mut T, prev: *mut T, next: *mut T) {
        // SAFETY: per the contract.
        unsafe {
            self.join(prev, item);
            self.join(item, next);
        }
    }

    /// # Safety
    /// `item` is an element of this list.
    pub unsafe fn remove(&mut self, item: *mut T) {
        // SAFETY: item and its neighbours are live elements of this list.
        unsafe {
            let (next_link, prev_link) = T::links(item);
            self.join(*prev_link, *next_link);
            *next_link = null_mut();
            *prev_link = null_mut();
        }
    }

    /// Make `next` follow `prev`; a null side means that end of the list.
    ///
    /// # Safety
    /// `prev` and `next` are null or live elements (or the one being linked).
    unsafe fn join(&mut self, prev: *mut T, next: *mut T) {
        // SAFETY: per the contract.
        unsafe {
            if prev.is_null() {
                self.first = next;
            } else {
                *T::links(prev).0 = next;
            }
            if next.is_null() {
                self.last = prev;
            } else {
                *T::links(next).1 = prev;
            }
        }
    }

    /// Remove and return the first element (null when empty).
    pub fn pop_front(&mut self) -> *mut T {
        let item = self.first;
        if !item.is_null() {
            // SAFETY: first is an element of this list.
            unsafe { self.remove(item) };
        }
        item
    }

    /// Whether `item` is the list's only element.
    pub fn is_only(&self, item: *mut T) -> bool {
        self.first == item && self.last == item
    }
}

impl<T: Linked> Default for List<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
#[allow(clippy::undocumented_unsafe_blocks)] // test code exercising the contracts
mod tests {
    use super::*;

    #[test]
    fn push_remove_keeps_order_and_ends() {
        let mut pages = [Page::UNUSED, Page::UNUSED, Page::UNUSED];
        let base = pages.as_mut_ptr();
        // SAFETY: indices are in bounds.
        let p: [*mut Page; 3] = [0, 1, 2].map(|i| unsafe { base.add(i) });
        let mut list = List::<Page>::new();
        unsafe {
            list.push_back(p[1]);
            list.push_front(p[0]);
            list.push_back(p[2]);
            assert_eq!((list.first, list.last), (p[0], p[2]));
            list.remove(p[1]);
            assert_eq!((*p[0]).next.get(), p[2]);
            assert_eq!((*p[2]).prev.get(), p[0]);
            assert_eq!(list.pop_front(), p[0]);
            assert!(list.is_only(p[2]));
            list.remove(p[2]);
            assert!(list.is_empty() && list.last.is_null());
        }
    }
}
