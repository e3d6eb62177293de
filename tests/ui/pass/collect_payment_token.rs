use privacy_pledge::data::PaymentToken;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{PersonalInfo, SubjectId};

fn main() {
    let _: PersonalInfo<PaymentToken, Transaction> =
        PersonalInfo::collect(SubjectId::random(), PaymentToken::parse("tok_visa_4242").unwrap());
}
