/**
 * `@armlib/s3`: the S3 cache adapter of armlib (results shared by many hosts through one bucket).
 * Select it with `"cache": { "adapter": "s3", "options": { "bucket": "…" } }`.
 *
 * @packageDocumentation
 */
export { checkS3CacheOptions, S3_CACHE_DEFAULTS } from './options.js';
export type { S3CacheManagerOptions } from './options.js';
/** The plugin, also under the name core looks for (`armlibAdapter`) when it loads `@armlib/s3`. */
export { s3Adapter, s3Adapter as armlibAdapter } from './plugin.js';
export { S3CacheManager } from './s3-cache-manager.js';
