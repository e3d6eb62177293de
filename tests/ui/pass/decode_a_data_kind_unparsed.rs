// The allowed twin: generic code over `DataKind` takes values that their
// kind's `parse` made.
use privacy_pledge::data::{DataKind, PaymentToken};

fn keep<T: DataKind>(value: T) -> Option<T> {
    Some(value)
}

fn main() {
    let token = PaymentToken::parse("tok_1MqLX2Lkdj").unwrap();
    let _: Option<PaymentToken> = keep(token);
}
