/**
 * Domain errors with stable codes. The API maps `code` to an HTTP status,
 * the CLI maps it to a message and exit code; callers switch on `code`,
 * never on message text.
 */
export type ErrorCode =
  | 'InvalidArgument'
  | 'NotFound'
  | 'Conflict'
  | 'Forbidden'
  | 'Unavailable'
  | 'Internal';

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
  constructor(message: string) {
    super('NotFound', message);
  }
}

export class NetworkNotFound extends NotFound {
  constructor(idOrName: string) {
    super(`network ${idOrName} not found`);
  }
}

export class EndpointNotFound extends NotFound {
  constructor(idOrName: string) {
    super(`endpoint ${idOrName} not found`);
  }
}

export class SandboxNotFound extends NotFound {
  constructor(idOrName: string) {
    super(`sandbox ${idOrName} not found`);
  }
}

export class Conflict extends NetctlError {
  constructor(message: string) {
    super('Conflict', message);
  }
}

/** The operation is refused in the object's current state (libnetwork's ActiveEndpointsError). */
export class Forbidden extends NetctlError {
  constructor(message: string) {
    super('Forbidden', message);
  }
}

export class Unavailable extends NetctlError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('Unavailable', message, options);
  }
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
      return 404;
    case 'Conflict':
      return 409;
    case 'Forbidden':
      return 403;
    case 'Unavailable':
      return 503;
    case 'Internal':
      return 500;
  }
}
