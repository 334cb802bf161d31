//! The JetStream API subjects a service needs for its own streams,
//! consumers and key-value buckets: reading and creating, never deleting
//! or purging.

/// Publish permissions to look streams up and read the account's
/// JetStream limits (every JetStream user needs them).
pub(super) fn lookup() -> [String; 2] {
    ["$JS.API.INFO".into(), "$JS.API.STREAM.NAMES".into()]
}

/// Publish permissions to declare stream `stream` (`*` when not known
/// before start: any stream, read-only) and read its messages.
pub(super) fn stream(stream: &str) -> Vec<String> {
    let mut subjects = vec![
        format!("$JS.API.STREAM.INFO.{stream}"),
        format!("$JS.API.STREAM.MSG.GET.{stream}"),
    ];
    if stream != "*" {
        subjects.push(format!("$JS.API.STREAM.CREATE.{stream}"));
        subjects.push(format!("$JS.API.STREAM.UPDATE.{stream}"));
    }
    subjects
}

/// Publish permissions of durable consumer `consumer` on `stream`: create
/// (every form the client uses), read, pull, acknowledge.
pub(super) fn consumer(stream: &str, consumer: &str) -> Vec<String> {
    vec![
        format!("$JS.API.CONSUMER.CREATE.{stream}.{consumer}"),
        format!("$JS.API.CONSUMER.CREATE.{stream}.{consumer}.>"),
        format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{consumer}"),
        format!("$JS.API.CONSUMER.INFO.{stream}.{consumer}"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
        format!("$JS.ACK.{stream}.{consumer}.>"),
    ]
}

/// Subscribe permission for the advisory of messages the server gave up
/// on (`max_deliver` reached) of `consumer` on `stream`.
pub(super) fn advisory(stream: &str, consumer: &str) -> String {
    format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}")
}

/// Publish permissions of key-value bucket `bucket`: create and read its
/// stream, read and write its keys, watch them (ordered consumers).
pub(super) fn key_value(bucket: &str) -> Vec<String> {
    let stream = format!("KV_{bucket}");
    let mut subjects = self::stream(&stream);
    subjects.extend([
        format!("$KV.{bucket}.>"),
        format!("$JS.API.DIRECT.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}.>"),
        format!("$JS.API.CONSUMER.CREATE.{stream}"),
        format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
        format!("$JS.API.CONSUMER.INFO.{stream}.*"),
        format!("$JS.API.CONSUMER.DELETE.{stream}.*"),
        format!("$JS.FC.{stream}.>"),
    ]);
    subjects
}

/// What no service may do: delete or purge streams, consumers or
/// messages (denied explicitly, whatever else is allowed).
pub(super) fn denied() -> Vec<String> {
    vec![
        "$JS.API.STREAM.DELETE.>".into(),
        "$JS.API.STREAM.PURGE.>".into(),
        "$JS.API.STREAM.MSG.DELETE.>".into(),
        "$JS.API.STREAM.SNAPSHOT.>".into(),
        "$JS.API.STREAM.RESTORE.>".into(),
        "$JS.API.ACCOUNT.>".into(),
        "$JS.API.META.>".into(),
        "$JS.API.SERVER.>".into(),
    ]
}
