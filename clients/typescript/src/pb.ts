/**
 * The generated `sessionmemory.v1` API (protobuf-es): messages, enums and the
 * `MemoryService` descriptor. Generated code lives in `gen/`; this module only gathers it.
 *
 * @module
 */
export * from "./gen/sessionmemory/v1/error_reason_pb.js";
export * from "./gen/sessionmemory/v1/memory_pb.js";
export * from "./gen/sessionmemory/v1/memory_service_pb.js";
