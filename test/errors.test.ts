import test from 'ava';
import {
  Conflict,
  EndpointNotFound,
  InvalidArgument,
  LockHeld,
  LockTimeout,
  NetworkNotFound,
  NotFound,
  SandboxNotFound,
  StoreClosed,
  StoreCorrupt,
  Unavailable,
  httpStatus,
  isNotFound,
} from '../src/errors.js';

test('each kind of missing object has its own code and is still a NotFound answered with 404', (t) => {
  const cases: [NotFound, string][] = [
    [new NetworkNotFound('n1'), 'NetworkNotFound'],
    [new EndpointNotFound('e1'), 'EndpointNotFound'],
    [new SandboxNotFound('s1'), 'SandboxNotFound'],
    [new NotFound('service x not found'), 'NotFound'],
  ];
  for (const [err, code] of cases) {
    t.is(err.code as string, code);
    t.true(err instanceof NotFound);
    t.true(isNotFound(err));
    t.is(httpStatus(err), 404);
  }
  t.false(isNotFound(new Conflict('x')));
  t.false(isNotFound(new Error('network x not found')));
});

test('store and lock errors are NetctlErrors: unavailable ones answer 503, a held lock 409, corruption 500', (t) => {
  t.is(new StoreClosed().code, 'StoreClosed');
  t.true(new StoreClosed() instanceof Unavailable);
  t.is(httpStatus(new StoreClosed()), 503);
  t.is(httpStatus(new LockTimeout('/var/lib/netctl/lock', 100)), 503);
  t.is(new LockTimeout('/x', 100).code, 'LockTimeout');
  t.is(httpStatus(new LockHeld('/x', 42)), 409);
  t.regex(new LockHeld('/x', 42).message, /process 42/);
  t.is(httpStatus(new StoreCorrupt('bad json')), 500);
  t.is(httpStatus(new InvalidArgument('x')), 400);
  t.is(httpStatus(new Error('plain')), 500);
});
