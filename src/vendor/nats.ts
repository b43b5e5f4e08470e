// The NATS client as corral loads it. Every value import of an @nats-io package goes through this
// file (test/vendor-imports.test.ts): the build replaces its compiled copy with one bundled file
// (scripts/build.js), which loads in ~25 ms against ~60 ms for the 150-odd CommonJS modules
// behind these names. One file also means one copy of each class, so `instanceof` holds across
// them. Types may still come from the packages themselves.

export {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from "@nats-io/jetstream";
export { Kvm } from "@nats-io/kv";
export {
  headers,
  NoRespondersError,
  nanos,
  nuid,
  RequestError,
  TimeoutError,
} from "@nats-io/nats-core";
// The protocol parser's states and event kinds, for src/nats/msg-frames.ts.
export { Kind, State } from "@nats-io/nats-core/internal";
export { ServiceErrorCodeHeader, ServiceErrorHeader, Svcm } from "@nats-io/services";
export { connect } from "@nats-io/transport-node";
