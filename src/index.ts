// Public API of builder: build images from Dockerfiles, pull images, or work with the pieces directly.

export { build, buildMetadata, explainCache, type BuildMetadata, type BuildOptions, type BuildResult, type Output, type StepForecast } from './client/build.js';
export { parseAddHost, parseShmSize, parseUlimit } from './client/run-settings.js';
export { parseBuildContext, type BuildContextSource } from './client/context-sources.js';
export { pull, type PullOptions, type PullResult } from './client/pull.js';
export { run, ContainerStartError, parseVolumeFlag, RunConfigError, type RunOptions, type RunResult, type RunningContainer, type Volume } from './client/run.js';
export { listContainers, removeContainers, type ContainerInfo, type ContainerRecord } from './client/containers.js';
export { push, type PushOptions, type PushResult } from './client/push.js';
export {
  listImages,
  inspectImage,
  tagImage,
  removeImages,
  imageHistory,
  shortId,
  NoSuchImageError,
  type ImagesOptions,
  type LocalImage,
  type RemovedImage,
  type HistoryRow,
} from './client/images.js';
export { save, load, importImage, type SaveOptions, type LoadOptions, type LoadedImage, type ImportOptions } from './client/archive.js';
export { ArchiveError } from './source/archive.js';
export { doctor, StateInUseError, type DoctorOptions, type DoctorReport, type DoctorIssue } from './client/doctor.js';
export { du, type DuOptions, type DiskUsage, type StoreEntry } from './client/du.js';
export { prune, type PruneOptions, type PruneResult } from './client/prune.js';
export { plan, formatPlan, type PlanOptions, type PlanResult, type PlannedStage, type PlannedStep } from './client/plan.js';
export type { BuildDefinitionOptions } from './client/input.js';
export type { ProgressEvent, ProgressListener, StepEvent, LogEvent, WarningEvent, BytesEvent } from './progress.js';
export { defaultStateRoot } from './cache/state.js';
export { loadConfig, defaultConfigPath, ConfigError, type BuilderConfig } from './client/config.js';
export * from './definition/index.js';
export * from './oci/types.js';
export { canonicalJson, sha256 } from './oci/digest.js';
export { formatPlatform, normalizePlatform, parsePlatform } from './oci/platform.js';
export { compile, parseDockerfile, parseDockerignore, DockerfileError, type Entitlement } from './frontend/index.js';
export { StepError } from './solver/errors.js';
export { SourceNotFoundError } from './util/select.js';
export { parseReference, RegistryClient } from './registry/index.js';
export { parseSecretFlag, type SecretSpec } from './source/secrets.js';
export { parseSshFlag, type SshSpec } from './source/ssh.js';
export type { CacheExport } from './exporter/cache-export.js';
export type { CacheImport } from './source/cache-import.js';
