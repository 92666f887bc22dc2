//! Fixed-capacity containers for code that runs before there is a heap.
//!
//! [`FixedVec`] is a vector with its storage inline, [`FixedStr`] a UTF-8 string with its
//! bytes inline. Both are `Copy` (when the element type is), const-constructible, and report
//! running out of room as [`Full`] instead of growing or truncating.

use core::fmt;
use core::mem::MaybeUninit;
use core::ops::{Deref, DerefMut};

/// A fixed-capacity container had no room for what was added to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("fixed-capacity container is full")
    }
}

/// A vector of at most `N` elements stored inline.
///
/// It dereferences to `[T]`, so every slice method (`get`, `first`, `sort_unstable_by`, ...)
/// is available on it.
pub struct FixedVec<T: Copy, const N: usize> {
    items: [MaybeUninit<T>; N],
    len: usize,
}

impl<T: Copy, const N: usize> FixedVec<T, N> {
    /// An empty vector.
    pub const fn new() -> Self {
        Self { items: [MaybeUninit::uninit(); N], len: 0 }
    }

    /// The most elements it can hold.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// How many elements it holds.
    pub const fn len(&self) -> usize {
        self.len
    }

    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub const fn is_full(&self) -> bool {
        self.len == N
    }

    /// The elements, in order.
    pub fn as_slice(&self) -> &[T] {
        let init = &self.items[..self.len];
        // SAFETY: the first `len` slots are initialized (every method that grows `len` writes
        // the slot first), and `MaybeUninit<T>` has the same layout as `T`.
        unsafe { &*(init as *const [MaybeUninit<T>] as *const [T]) }
    }

    /// The elements, in order, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        let init = &mut self.items[..self.len];
        // SAFETY: as in `as_slice`: the first `len` slots are initialized.
        unsafe { &mut *(init as *mut [MaybeUninit<T>] as *mut [T]) }
    }

    pub fn iter(&self) -> core::slice::Iter<'_, T> {
        self.as_slice().iter()
    }

    /// Append `value`; `Err(Full)` (and nothing changes) when there are already `N` elements.
    pub fn push(&mut self, value: T) -> Result<(), Full> {
        if self.len == N {
            return Err(Full);
        }
        self.items[self.len] = MaybeUninit::new(value);
        self.len += 1;
        Ok(())
    }

    /// Remove and return the last element.
    pub fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: slot `len` (the old last one) was initialized.
        Some(unsafe { self.items[self.len].assume_init() })
    }

    /// Insert `value` at `index`, shifting the later elements up.
    ///
    /// `Err(Full)` when full. Panics if `index > len`, like `Vec::insert`.
    pub fn insert(&mut self, index: usize, value: T) -> Result<(), Full> {
        assert!(index <= self.len, "FixedVec::insert index {index} out of bounds (len {})", self.len);
        if self.len == N {
            return Err(Full);
        }
        self.items.copy_within(index..self.len, index + 1);
        self.items[index] = MaybeUninit::new(value);
        self.len += 1;
        Ok(())
    }

    /// Remove and return the element at `index`, shifting the later elements down.
    ///
    /// Panics if `index >= len`, like `Vec::remove`.
    pub fn remove(&mut self, index: usize) -> T {
        assert!(index < self.len, "FixedVec::remove index {index} out of bounds (len {})", self.len);
        // SAFETY: `index < len`, so the slot is initialized.
        let value = unsafe { self.items[index].assume_init() };
        self.items.copy_within(index + 1..self.len, index);
        self.len -= 1;
        value
    }

    /// Keep only the elements for which `keep` returns true, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let mut kept = 0;
        for i in 0..self.len {
            let item = self.as_slice()[i];
            if keep(&item) {
                self.items[kept] = MaybeUninit::new(item);
                kept += 1;
            }
        }
        self.len = kept;
    }

    /// Drop every element after the first `len`.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
        }
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl<T: Copy, const N: usize> Default for FixedVec<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy, const N: usize> Clone for FixedVec<T, N> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Copy, const N: usize> Copy for FixedVec<T, N> {}

impl<T: Copy, const N: usize> Deref for FixedVec<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Copy, const N: usize> DerefMut for FixedVec<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

impl<T: Copy + PartialEq, const N: usize> PartialEq for FixedVec<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Copy + Eq, const N: usize> Eq for FixedVec<T, N> {}

impl<T: Copy + fmt::Debug, const N: usize> fmt::Debug for FixedVec<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a, T: Copy, const N: usize> IntoIterator for &'a FixedVec<T, N> {
    type Item = &'a T;
    type IntoIter = core::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// A UTF-8 string of at most `N` bytes stored inline.
#[derive(Clone, Copy)]
pub struct FixedStr<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> FixedStr<N> {
    /// The empty string.
    pub const fn new() -> Self {
        Self { bytes: [0; N], len: 0 }
    }

    /// A copy of `s`, or `Err(Full)` if it is longer than `N` bytes (never truncated).
    pub fn try_from_str(s: &str) -> Result<Self, Full> {
        let mut out = Self::new();
        out.push_str(s)?;
        Ok(out)
    }

    /// Append `s`; `Err(Full)` (and nothing changes) if it does not fit.
    pub fn push_str(&mut self, s: &str) -> Result<(), Full> {
        let end = self.len.checked_add(s.len()).filter(|&end| end <= N).ok_or(Full)?;
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in, so the prefix is always valid UTF-8.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }

    /// Length in bytes.
    pub const fn len(&self) -> usize {
        self.len
    }

    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub const fn capacity(&self) -> usize {
        N
    }

    pub fn clear(&mut self) {
        self.bytes[..self.len].fill(0);
        self.len = 0;
    }
}

impl<const N: usize> Default for FixedStr<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Deref for FixedStr<N> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> PartialEq for FixedStr<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<const N: usize> Eq for FixedStr<N> {}

impl<const N: usize> PartialEq<str> for FixedStr<N> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl<const N: usize> PartialEq<&str> for FixedStr<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl<const N: usize> fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn vec_push_until_full() {
        let mut v: FixedVec<u32, 3> = FixedVec::new();
        assert!(v.is_empty());
        for i in 0..3 {
            v.push(i).unwrap();
        }
        assert!(v.is_full());
        assert_eq!(v.push(9), Err(Full));
        assert_eq!(v.as_slice(), &[0, 1, 2]);
        assert_eq!(v.len(), 3);
        assert_eq!(v.iter().sum::<u32>(), 3);
    }

    #[test]
    fn vec_insert_remove_retain() {
        let mut v: FixedVec<u32, 5> = FixedVec::new();
        v.push(1).unwrap();
        v.push(3).unwrap();
        v.insert(1, 2).unwrap();
        v.insert(0, 0).unwrap();
        v.insert(4, 4).unwrap();
        assert_eq!(v.as_slice(), &[0, 1, 2, 3, 4]);
        assert_eq!(v.insert(0, 9), Err(Full));
        assert_eq!(v.remove(2), 2);
        assert_eq!(v.as_slice(), &[0, 1, 3, 4]);
        v.retain(|&x| x % 2 == 0);
        assert_eq!(v.as_slice(), &[0, 4]);
        assert_eq!(v.pop(), Some(4));
        assert_eq!(v.pop(), Some(0));
        assert_eq!(v.pop(), None);
    }

    #[test]
    fn vec_copy_eq_debug() {
        const EMPTY: FixedVec<u8, 4> = FixedVec::new();
        let mut a = EMPTY;
        a.push(7).unwrap();
        let b = a;
        assert_eq!(a, b);
        a.clear();
        assert_ne!(a, b);
        assert_eq!(a, EMPTY);
        assert_eq!(format!("{b:?}"), "[7]");
        let mut c = b;
        c.as_mut_slice()[0] = 8;
        c.sort_unstable();
        assert_eq!(c[0], 8);
    }

    #[test]
    fn str_capacity_is_enforced() {
        let s = FixedStr::<5>::try_from_str("hello").unwrap();
        assert_eq!(s.as_str(), "hello");
        assert_eq!(FixedStr::<4>::try_from_str("hello"), Err(Full));
        let mut t = FixedStr::<8>::new();
        t.push_str("ab").unwrap();
        assert_eq!(t.push_str("cdefghi"), Err(Full));
        assert_eq!(t, "ab");
        t.push_str("é").unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(format!("{t:?} {t}"), "\"abé\" abé");
        t.clear();
        assert_eq!(t, FixedStr::<8>::new());
    }
}
