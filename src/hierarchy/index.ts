export {
  createKeyTree,
  isInScope,
  requirePurpose,
  type KeyScope,
  type KeyTree,
  type KeyVersionRef,
} from "./key-tree.ts";
export { MaterialCache, type MaterialCacheOptions } from "./material-cache.ts";
export {
  parseKeyPath,
  formatKeyPath,
  SEGMENT_PATTERN,
  type KeyPath,
  type ServicePurpose,
} from "./paths.ts";
export { ROOT_PARENT_ID } from "./views.ts";
export type * from "./types.ts";
export { applyHierarchy, type ApplyResult, type Drift, type PlannedCreate } from "./apply.ts";
export { readHierarchyDocument, type DesiredKey } from "./hierarchy-file.ts";
export {
  pendingRootRewrap,
  rewrapUnderNewRoot,
  rotateRoot,
  ROOT_REWRAPPED_TOPIC,
  type RootRewrapOptions,
  type RootRewrapProgress,
  type RootRewrapResult,
  type RotatableRoot,
} from "./root-rotation.ts";
