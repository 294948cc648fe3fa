//! The HTTP API's JSON request bodies, parsed as every body type the API takes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchboard_api::bodies::parse_any_api_body(data);
});
