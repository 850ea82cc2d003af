/**
 * `netctl/client`: the HTTP API client alone, for a runtime that talks to a
 * running `netctl daemon`. It loads no native code and none of the
 * controller's dependencies (etcd3, better-sqlite3, netlink), so importing it
 * is cheap and works where the addon was never built; test/package checks that.
 */
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
export type { Filters } from './cnm/filters.js';
export {
  Conflict,
  EndpointNotFound,
  Forbidden,
  InvalidArgument,
  NetctlError,
  NetworkNotFound,
  NotFound,
  SandboxNotFound,
  ServiceNotFound,
  Unavailable,
  isNetctlError,
  isNotFound,
} from './errors.js';
export type { ErrorCode, NotFoundCode, UnavailableCode } from './errors.js';
