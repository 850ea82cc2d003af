/**
 * The one logging interface every layer takes. Parts log through an injected
 * Logger, never to the console, so the daemon decides where lines go and
 * which levels are kept (`netctl daemon --log-level`), and tests collect them.
 */
import { InvalidArgument } from './errors.js';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Logger {
  /** Detail for a developer chasing a bug: every dropped frame, every retry. */
  debug(message: string): void;
  /** A change an operator wants to see: a peer up or down, the store reachable again. */
  info(message: string): void;
  /** Something failed and netctl carried on: an upstream that did not answer, a record it ignored. */
  warn(message: string): void;
  /** Something failed that an operator must act on. */
  error(message: string): void;
}

/** Drops every line: the default of library parts that were given no logger. */
export const silentLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
};

/** A Logger that hands `write` the lines at `minimum` level and above. */
export function levelLogger(write: (level: LogLevel, message: string) => void, minimum: LogLevel = 'debug'): Logger {
  const floor = LOG_LEVELS.indexOf(minimum);
  const at = (level: LogLevel) => (LOG_LEVELS.indexOf(level) >= floor ? (message: string) => write(level, message) : () => {});
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

export function parseLogLevel(text: string): LogLevel {
  const level = LOG_LEVELS.find((candidate) => candidate === text);
  if (level === undefined) throw new InvalidArgument(`invalid log level "${text}": use one of ${LOG_LEVELS.join(', ')}`);
  return level;
}

/** Warnings and errors to the console: the default of the parts a library user may run without a logger. */
export const consoleWarnings: Logger = levelLogger((_level, message) => console.warn(message), 'warn');
