//! The baseline for the cold-start figure of `make bench`: the smallest `lambda_runtime`
//! function (it echoes its event), built with the same profile as the real ones.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}
