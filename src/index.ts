/**
 * netctl as a library: the Controller and its request types, errors, stores,
 * drivers, the host wiring, and the HTTP API's server and client.
 */
export { Controller } from './cnm/controller.js';
export type { ControllerOptions } from './cnm/controller.js';
export type {
  ConnectOptions,
  ControllerEvent,
  DisconnectOptions,
  EndpointCreateRequest,
  NetworkCreateRequest,
  NetworkView,
  PublishedPortRequest,
  SandboxCreateRequest,
  SandboxInfo,
  SandboxNetwork,
  ServiceCreateRequest,
  ServiceView,
} from './cnm/types.js';
export type { JoinRequest, LeaveRequest, NetworkDriver, NetworkSpec } from './cnm/driver.js';
export {
  Conflict,
  EndpointNotFound,
  Forbidden,
  InvalidArgument,
  NetctlError,
  NetworkNotFound,
  NotFound,
  LockHeld,
  LockTimeout,
  SandboxNotFound,
  ServiceNotFound,
  Unavailable,
  httpStatus,
  isNetctlError,
  isNotFound,
} from './errors.js';
export type { ErrorCode, NotFoundCode, UnavailableCode } from './errors.js';
export { LOG_LEVELS, consoleWarnings, levelLogger, parseLogLevel, silentLogger } from './log.js';
export type { LogLevel, Logger } from './log.js';
export { parseFilterArgs, parseFiltersJson } from './cnm/filters.js';
export type { Filters } from './cnm/filters.js';
export { toDockerContainer, toDockerContainerSummary, toDockerNetwork, toDockerService } from './api/docker.js';
export type {
  DockerContainer,
  DockerContainerSummary,
  DockerEndpointResource,
  DockerEndpointSettings,
  DockerIpamConfig,
  DockerNetwork,
  DockerPortConfig,
  DockerService,
} from './api/docker.js';
export type { PoolRequest } from './cnm/ipam.js';
export type { NamespaceOps } from './cnm/namespaces.js';
export type {
  EndpointMode,
  EndpointRecord,
  IpamPoolConfig,
  NetworkRecord,
  PortProtocol,
  PublishMode,
  PublishedPort,
  SandboxRecord,
  Scope,
  ServiceNetwork,
  ServiceRecord,
} from './records.js';
export { FileStore, MemoryStore, SqliteStore, StoreClosed, StoreCorrupt } from './store/index.js';
export type { Compare, FileStoreOptions, KeyValue, SqliteStoreOptions, Store, TxnRequest, TxnResult, Watch, WatchEvent } from './store/index.js';
export { BridgeDriver } from './drivers/bridge/bridge.js';
export type { BridgeDriverOptions } from './drivers/bridge/bridge.js';
export { NullDriver } from './drivers/null/null.js';
export { HostDriver } from './drivers/host/host.js';
export { OverlayDriver } from './drivers/overlay/overlay.js';
export type { OverlayDriverOptions } from './drivers/overlay/overlay.js';
export { EtcdStore } from './store/etcd.js';
export { DEFAULT_STATE_DIR, kernelNamespaces, openHost } from './host.js';
export type { Host, HostOptions } from './host.js';
export { ApiServer } from './api/server.js';
export type { ApiServerOptions } from './api/server.js';
export { ApiClient, DEFAULT_HOST, DaemonUnreachable, isDaemonError } from './api/client.js';
export type { PingResult } from './api/client.js';
export { API_VERSION, MIN_API_VERSION } from './api/types.js';
export type {
  InfoJson,
  IpamConfigBody,
  NetworkConnectBody,
  NetworkCreateBody,
  NetworkCreateResponse,
  NetworkDisconnectBody,
  NetworkPruneResponse,
  PortConfigBody,
  SandboxCreateBody,
  SandboxJson,
  SandboxNetworkJson,
  ServiceCreateBody,
  ServiceCreateResponse,
  VersionJson,
} from './api/types.js';
