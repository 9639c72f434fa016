export { checkFileCacheOptions, FileCacheManager } from './cache/file-cache-manager.js';
export type { FileCacheManagerOptions } from './cache/file-cache-manager.js';
export { migrateFileCache } from './cache/migrate-schema.js';
export type { FileCacheMigration } from './cache/migrate-schema.js';
export { FILE_CACHE_DEFAULTS } from './cache/options.js';
export { armlibAdapter, fileAdapter } from './plugin.js';
export { checkFileQueueOptions, FileQueueManager } from './queue/file-queue-manager.js';
export type { FileQueueManagerOptions } from './queue/file-queue-manager.js';
