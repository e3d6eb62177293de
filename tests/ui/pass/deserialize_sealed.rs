use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::Sealed;

fn main() {
    let parsed: Result<Sealed<EmailAddress, Transaction>, _> = serde_json::from_str("\"AQ\"");
    assert!(parsed.is_err());
}
