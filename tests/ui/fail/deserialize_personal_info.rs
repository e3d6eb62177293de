use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::PersonalInfo;

fn main() {
    let _: Result<PersonalInfo<EmailAddress, Transaction>, _> = serde_json::from_str("\"ada@example.com\"");
}
