// The twin of `fail/record_not_personal_renamed_kind.rs` and
// `fail/record_not_personal_wrapped_kind.rs`: types that hold no personal
// information, renamed or wrapped, and a host type that says so.
use privacy_pledge::data::FullName;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::record::NotPersonal;
use privacy_pledge::time::Timestamp as SignedUp;
use privacy_pledge::{Custodian, PersonalInfo, PersonalRecord, SubjectId};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Plan {
    Free,
    Pro,
}
impl NotPersonal for Plan {}

#[derive(PersonalRecord)]
struct Customer {
    name: PersonalInfo<FullName, Transaction>,
    #[pledge(not_personal)]
    signed_up: SignedUp,
    #[pledge(not_personal)]
    referrer: Option<SubjectId>,
    #[pledge(not_personal)]
    plans: Vec<Plan>,
}

fn main() {
    let custodian = Custodian::in_memory();
    let customer = Customer {
        name: PersonalInfo::collect(SubjectId::random(), FullName::parse("Ada Lovelace").unwrap()),
        signed_up: SignedUp::from_unix_seconds(1_530_316_800),
        referrer: None,
        plans: vec![Plan::Free, Plan::Pro],
    };
    let row = custodian.seal_record(&customer).unwrap();
    let back = custodian.open_record(&row).unwrap();
    assert_eq!(back.plans, [Plan::Free, Plan::Pro]);
    assert_eq!(back.signed_up, customer.signed_up);
    assert_eq!(back.referrer, None);
}
