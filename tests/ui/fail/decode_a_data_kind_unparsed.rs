// R1: a value of a data kind is made only by its `parse`. Generic code
// bounded by `DataKind` can name the codec the crate seals with, but cannot
// call it: a card number never becomes a `PaymentToken`.
use privacy_pledge::data::{DataKind, PaymentToken};

fn forge<T: DataKind>(bytes: &[u8]) -> Option<T> {
    T::decode(bytes).ok()
}

fn main() {
    let _: Option<PaymentToken> = forge(b"4111111111111111");
}
