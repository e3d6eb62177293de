// No data kind, and nothing that carries one, is `NotPersonal`.
use privacy_pledge::data::{
    EmailAddress, FullName, PaymentToken, PhoneNumber, PostalAddress, PurchaseRecord,
};
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{LookupToken, PersonalInfo, PersonalRecord, Pseudonym, Sealed};

#[derive(PersonalRecord)]
struct Customer {
    name: PersonalInfo<FullName, Transaction>,
    #[pledge(not_personal)]
    full_name: FullName,
    #[pledge(not_personal)]
    address: PostalAddress,
    #[pledge(not_personal)]
    purchase: PurchaseRecord,
    #[pledge(not_personal)]
    card: PaymentToken,
    #[pledge(not_personal)]
    sealed: Sealed<EmailAddress, Transaction>,
    #[pledge(not_personal)]
    index: LookupToken<PhoneNumber>,
    #[pledge(not_personal)]
    pseudonym: Pseudonym<EmailAddress>,
}

fn main() {}
