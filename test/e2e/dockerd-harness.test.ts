/**
 * The dockerd the Docker plugin tests use keeps to what the test made: it
 * runs in the test's network namespace, and when it stops no process,
 * cgroup, file or mount of it is left and the host's /run and /etc/docker
 * are as they were.
 */
import test from 'ava';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDockerd } from '../helpers/dockerd.js';
import { addNetns, removeNetns, run, uniqueName } from '../helpers/kernel.js';

const processNames = async (): Promise<string[]> => (await run('ps', ['-eo', 'args='])).stdout.split('\n');

test('dockerd runs a busybox container in the test namespace and leaves nothing behind', async (t) => {
  const netns = uniqueName('dkh');
  const pluginDir = await mkdtemp(join(tmpdir(), 'netctl-dkh-plugins-'));
  const etcDockerBefore = readdirSync('/etc/docker').sort();
  const runDockerBefore = existsSync('/run/docker');
  await addNetns(netns);
  t.teardown(async () => {
    await removeNetns(netns);
    await rm(pluginDir, { recursive: true, force: true });
  });

  const dockerd = await startDockerd({ netns, pluginDir, name: 'dkh' });
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await dockerd.stop();
  });
  await dockerd.importBusybox();
  const ran = await dockerd.docker(['run', '--rm', '--network', 'none', 'busybox', 'echo', 'hello from busybox']);
  t.is(ran.code, 0, ran.stderr);
  t.is(ran.stdout.trim(), 'hello from busybox');
  const started = await dockerd.docker(['run', '-d', '--name', 'sleeper', '--network', 'none', 'busybox', 'sleep', '600']);
  t.is(started.code, 0, started.stderr);
  const root = dockerd.dockerHost.replace(/^unix:\/\//, '').replace(/\/docker\.sock$/, '');
  const containerPid = Number((await dockerd.docker(['inspect', '-f', '{{.State.Pid}}', 'sleeper'])).stdout.trim());
  t.true(containerPid > 0 && existsSync(`/proc/${containerPid}`), 'the container runs');
  // dockerd itself runs in the test's namespace, so the links it makes for containers are there.
  const dockerdPid = Number((await readFile(join(root, 'docker.pid'), 'utf8')).trim());
  t.is(statSync(`/proc/${dockerdPid}/ns/net`).ino, statSync(`/var/run/netns/${netns}`).ino);

  // dockerd sees the plugin directory the test gave it, nothing of the host's.
  t.false(existsSync('/run/docker'), 'the plugin directory is bind-mounted in dockerd\'s own mount namespace');

  await dockerd.stop();
  stopped = true;
  t.false((await processNames()).some((args) => args.includes(root)), 'no process of this dockerd is left');
  t.false(existsSync(`/proc/${containerPid}`), 'the container is gone');
  t.false(existsSync(root), 'its files are removed');
  t.deepEqual(readdirSync('/etc/docker').sort(), etcDockerBefore, '/etc/docker is untouched');
  t.is(existsSync('/run/docker'), runDockerBefore);
  // Other tests add namespace mounts meanwhile; what this dockerd could have mounted is named by its paths and tmpfs names.
  const ours = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter((line) => /netctl-test-|\/run\/docker|\/etc\/docker/.test(line) || line.includes(root));
  t.deepEqual(ours, [], 'no mount of it in the test\'s mount namespace');
  const cgroups = readdirSync('/sys/fs/cgroup').filter((controller) => existsSync(join('/sys/fs/cgroup', controller, `netctl-test-dkh-${process.pid}`)));
  t.deepEqual(cgroups, [], 'no cgroup is left');
});
