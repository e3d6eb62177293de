//! R9 ("plaintext is wiped"): the buffers that hold a value's normalised
//! form while a pseudonym or lookup token is computed — and while two
//! values are compared — leave no copy in freed memory, also when a long
//! value makes them grow.
//!
//! The global allocator of this test binary looks into every block freed
//! while it is armed for a marker that exists only in the case-folded form
//! of the values used: a block freed with it inside held plaintext and was
//! not wiped. Implementing `GlobalAlloc` is `unsafe` (this binary and
//! `fork_nonces.rs` are the crate's only tests with `unsafe` code); it only
//! reads a block about to be freed, then frees it through the system
//! allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use privacy_pledge::data::{FullName, PostalAddress};
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

struct ScanFreed;
static ARMED: AtomicBool = AtomicBool::new(false);
static FOUND: AtomicUsize = AtomicUsize::new(0);
/// Lower case: only a folded form holds it (the values are written in
/// upper case, and their own text is not freed while armed).
const NEEDLE: &[u8] = b"zqxjvk";

// SAFETY: every call is passed on to `System` unchanged; `dealloc` reads
// the block it is given, which is valid for `layout.size()` bytes until it
// is freed just after.
unsafe impl GlobalAlloc for ScanFreed {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::SeqCst) {
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            if block.windows(NEEDLE.len()).any(|w| w == NEEDLE) {
                FOUND.fetch_add(1, Ordering::SeqCst);
            }
        }
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: ScanFreed = ScanFreed;

/// One test at a time arms the allocator.
static ONE: Mutex<()> = Mutex::new(());

/// How many freed, unwiped blocks held the marker while `f` ran.
fn unwiped_during(f: impl FnOnce()) -> usize {
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    FOUND.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    f();
    ARMED.store(false, Ordering::SeqCst);
    FOUND.load(Ordering::SeqCst)
}

/// A three-line postal address, longer than the buffers start out.
fn long_address() -> PostalAddress {
    PostalAddress::parse(
        "ZQXJVK Flat 4, 123 Longstreet Avenue\n\
         Springfield Industrial Estate, Building 7\n\
         Springfield IL 62704\n\
         US",
    )
    .unwrap()
}

#[test]
fn r9_pseudonyms_and_lookup_tokens_of_long_values_leave_no_plaintext_in_freed_memory() {
    let custodian = Custodian::in_memory();
    let address: PersonalInfo<PostalAddress, Transaction> =
        PersonalInfo::collect(SubjectId::random(), long_address());
    let name: PersonalInfo<FullName, Transaction> = PersonalInfo::collect(
        SubjectId::random(),
        FullName::parse(&format!("ZQXJVK {}", "Wolfeschlegelsteinhausen ".repeat(6))).unwrap(),
    );
    // The first call notes each token: allocations of their own.
    custodian.pseudonym(&address).unwrap();
    custodian.lookup_token(&address).unwrap();
    custodian.lookup_token(&name).unwrap();
    let typed = long_address();
    let found = unwiped_during(|| {
        custodian.pseudonym(&address).unwrap();
        custodian.lookup_token(&address).unwrap();
        custodian.lookup_token(&name).unwrap();
        custodian.lookup_token_of(&typed);
    });
    assert_eq!(found, 0, "freed blocks held the normalised value");
}

#[test]
fn r9_comparing_two_long_values_leaves_no_plaintext_in_freed_memory() {
    let (a, b) = (long_address(), long_address());
    let found = unwiped_during(|| assert!(a == b));
    assert_eq!(found, 0, "freed blocks held the normalised value");
}
