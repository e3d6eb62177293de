use privacy_pledge::data::EmailAddress;

fn main() {
    let email = EmailAddress::parse("ada@example.com").unwrap();
    let _ = serde_json::to_string(&email);
}
