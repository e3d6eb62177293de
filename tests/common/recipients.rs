//! Recipients the tests disclose to.

use privacy_pledge::recipient::{Processor, Recipient};

/// A payment processor (R3: a processor for `Transaction`).
pub struct Stripe;

impl Recipient for Stripe {
    type Role = Processor;
    fn name(&self) -> &str {
        "Stripe"
    }
}
