/**
 * Domain errors with stable codes. The API maps `code` to an HTTP status,
 * the CLI maps it to a message and exit code; callers switch on `code`,
 * never on message text.
 */
export type ErrorCode =
  | 'InvalidArgument'
  | NotFoundCode
  | 'Conflict'
  | 'LockHeld'
  | 'Forbidden'
  | UnavailableCode
  | 'StoreCorrupt'
  | 'Internal';

/** Every code that means "no such object"; the API answers each with 404. */
export type NotFoundCode = 'NotFound' | 'NetworkNotFound' | 'EndpointNotFound' | 'SandboxNotFound' | 'ServiceNotFound';

/** Every code that means "try again later"; the API answers each with 503. */
export type UnavailableCode = 'Unavailable' | 'StoreClosed' | 'LockTimeout' | 'DaemonUnreachable';

export class NetctlError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export class InvalidArgument extends NetctlError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('InvalidArgument', message, options);
  }
}

export class NotFound extends NetctlError {
  declare readonly code: NotFoundCode;
  constructor(message: string, code: NotFoundCode = 'NotFound') {
    super(code, message);
  }
}

export class NetworkNotFound extends NotFound {
  constructor(idOrName: string) {
    super(`network ${idOrName} not found`, 'NetworkNotFound');
  }
}

export class EndpointNotFound extends NotFound {
  constructor(idOrName: string) {
    super(`endpoint ${idOrName} not found`, 'EndpointNotFound');
  }
}

export class SandboxNotFound extends NotFound {
  constructor(idOrName: string) {
    super(`sandbox ${idOrName} not found`, 'SandboxNotFound');
  }
}

export class ServiceNotFound extends NotFound {
  constructor(idOrName: string) {
    super(`service ${idOrName} not found`, 'ServiceNotFound');
  }
}

export class Conflict extends NetctlError {
  constructor(message: string, code: 'Conflict' | 'LockHeld' = 'Conflict') {
    super(code, message);
  }
}

/** The operation is refused in the object's current state (libnetwork's ActiveEndpointsError). */
export class Forbidden extends NetctlError {
  constructor(message: string) {
    super('Forbidden', message);
  }
}

export class Unavailable extends NetctlError {
  declare readonly code: UnavailableCode;
  constructor(message: string, options?: { cause?: unknown; code?: UnavailableCode }) {
    super(options?.code ?? 'Unavailable', message, options);
  }
}

/** The store was closed under the caller (the daemon is shutting down). */
export class StoreClosed extends Unavailable {
  constructor() {
    super('store is closed', { code: 'StoreClosed' });
  }
}

/** Thrown when the stored bytes cannot be read back (never for a crash mid-write). */
export class StoreCorrupt extends NetctlError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('StoreCorrupt', message, options);
  }
}

/** Another holder kept a file lock past the caller's timeout. */
export class LockTimeout extends Unavailable {
  constructor(
    readonly path: string,
    readonly timeoutMs: number,
  ) {
    super(`timed out after ${timeoutMs} ms waiting for the lock on ${path}`, { code: 'LockTimeout' });
  }
}

/** A live process holds a lock that is taken for a process's whole life. */
export class LockHeld extends Conflict {
  constructor(
    readonly path: string,
    readonly holderPid: number | undefined,
  ) {
    super(`${path} is locked by ${holderPid === undefined ? 'another process' : `process ${holderPid}`}`, 'LockHeld');
  }
}

const notFoundCodes: ReadonlySet<string> = new Set<NotFoundCode>(['NotFound', 'NetworkNotFound', 'EndpointNotFound', 'SandboxNotFound', 'ServiceNotFound']);

/** True for any "no such object" error, whichever kind of object. */
export function isNotFound(err: unknown): err is NotFound {
  return err instanceof NetctlError && notFoundCodes.has(err.code);
}

export function isNetctlError(err: unknown): err is NetctlError {
  return err instanceof NetctlError;
}

/** HTTP status for an error, as the Docker Engine API uses them. */
export function httpStatus(err: unknown): number {
  if (!isNetctlError(err)) return 500;
  switch (err.code) {
    case 'InvalidArgument':
      return 400;
    case 'NotFound':
    case 'NetworkNotFound':
    case 'EndpointNotFound':
    case 'SandboxNotFound':
    case 'ServiceNotFound':
      return 404;
    case 'Conflict':
    case 'LockHeld':
      return 409;
    case 'Forbidden':
      return 403;
    case 'Unavailable':
    case 'StoreClosed':
    case 'LockTimeout':
    case 'DaemonUnreachable':
      return 503;
    case 'StoreCorrupt':
    case 'Internal':
      return 500;
  }
}
