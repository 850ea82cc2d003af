import test from 'ava';
import { InvalidArgument } from '../src/errors.js';
import { levelLogger, parseLogLevel } from '../src/log.js';

test('a level logger keeps the lines at its level and above, with their level', (t) => {
  const lines: string[] = [];
  const logger = levelLogger((level, message) => lines.push(`${level} ${message}`), 'info');
  logger.debug('frame dropped');
  logger.info('peer up');
  logger.warn('upstream slow');
  logger.error('store corrupt');
  t.deepEqual(lines, ['info peer up', 'warn upstream slow', 'error store corrupt']);
});

test('log levels parse by name; anything else is refused naming the choices', (t) => {
  t.is(parseLogLevel('debug'), 'debug');
  t.is(parseLogLevel('error'), 'error');
  t.throws(() => parseLogLevel('verbose'), { instanceOf: InvalidArgument, message: 'invalid log level "verbose": use one of debug, info, warn, error' });
});
