use privacy_pledge::data::{DataKind, Kind};

#[derive(Clone)]
struct CardNumber(String);

impl DataKind for CardNumber {
    const KIND: Kind = Kind::PaymentToken;
}

fn main() {}
