export { openStorage, createStorage, type Storage, type StorageConfig } from "./storage.ts";
export { migrateToLatest, type Dialect } from "./migrations/index.ts";
export { constraintViolation, type ConstraintKind } from "./errors.ts";
export * from "./schema.ts";
export type { KeyRow, KeyFilter } from "./repositories/keys.ts";
export type { KeyVersionRow } from "./repositories/key-versions.ts";
export type { OutboxRow } from "./repositories/outbox.ts";
export type { IssuanceRow } from "./repositories/issuances.ts";
export type {
  ClientSecretRow,
  RevokedTokenRow,
  ServicePrincipalFilter,
  ServicePrincipalRow,
} from "./repositories/service-principals.ts";
