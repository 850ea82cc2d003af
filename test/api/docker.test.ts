import test from 'ava';
import { humanDuration } from '../../src/api/docker.js';

test("humanDuration words a duration as Go's units.HumanDuration does for `docker ps`", (t) => {
  const second = 1000;
  const minute = 60 * second;
  const hour = 60 * minute;
  const day = 24 * hour;
  const cases: [number, string][] = [
    [450, 'Less than a second'],
    [second, '1 second'],
    [59 * second, '59 seconds'],
    [minute, 'About a minute'],
    [35 * minute + 40 * second, '35 minutes'],
    [hour + 29 * minute, 'About an hour'],
    [hour + 31 * minute, '2 hours'],
    [day + 12 * hour, '36 hours'],
    [13 * day + 5 * hour, '13 days'],
    [2 * 7 * day + 4 * day, '2 weeks'],
    [30 * day + 2 * 7 * day, '6 weeks'],
    [5 * 30 * day + 2 * 7 * day, '5 months'],
    [24 * 30 * day, '24 months'],
    [3 * 365 * day + 2 * day, '3 years'],
  ];
  for (const [ms, words] of cases) t.is(humanDuration(ms), words, `${ms} ms`);
});
