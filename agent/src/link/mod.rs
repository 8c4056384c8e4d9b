//! The outbound stream to the collector: hello, buffered samples, pushed UPS
//! changes, acks, reconnect with backoff, and commands coming back.
