//! The certificate-registered event and the lifecycle's neutral command, from raw bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = jitr_domain::event::RegistrationEvent::from_slice(data);
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = jitr_domain::command::DeviceCommand::from_value(&value);
    }
});
