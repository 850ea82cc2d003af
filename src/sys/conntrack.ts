/**
 * The kernel's connection tracking table of a network namespace, through the
 * `conntrack` tool (conntrack-tools) run under `nsenter --net=PATH`.
 */
import { execFile } from 'node:child_process';
import { NetctlError } from '../errors.js';
import { systemTool } from './tools.js';

/**
 * Deletes the flows of the namespace whose original destination is
 * `originalDestination` (any, when undefined) and whose replies come from
 * `replySource`: the flows a DNAT sent from one address to another. Their
 * next packet is tracked afresh, so it meets the NAT rules as they are now.
 * None to delete is not an error.
 */
export async function deleteTrackedFlows(netnsPath: string, originalDestination: string | undefined, replySource: string): Promise<void> {
  const args = [`--net=${netnsPath}`, systemTool('conntrack'), '-D'];
  if (originalDestination !== undefined) args.push('--orig-dst', originalDestination);
  args.push('--reply-src', replySource);
  await new Promise<void>((resolve, reject) => {
    execFile(systemTool('nsenter'), args, (err, _stdout, stderr) => {
      // conntrack exits 1 when nothing matched, saying "0 flow entries have been deleted".
      if (err === null || /\b0 flow entries have been deleted/.test(stderr)) resolve();
      else reject(new NetctlError('Internal', `conntrack -D in ${netnsPath} failed: ${stderr.trim() || err.message}`));
    });
  });
}
