/**
 * Summaries of the overlay benchmark's samples and the two ways they are
 * shown: a Markdown table and a horizontal bar chart of single-stream
 * throughput (hand-written SVG, the kernel vxlan marked). The spread of a
 * figure and its table cell serve the other benchmarks' tables too.
 */
import type { Sample } from './measure.js';

export type Metric = 'tcp1Gbps' | 'tcp4Gbps' | 'udp64Kpps' | 'rttP50Us' | 'rttP99Us' | 'cpuSecondsPerGB';
const METRICS: readonly Metric[] = ['tcp1Gbps', 'tcp4Gbps', 'udp64Kpps', 'rttP50Us', 'rttP99Us', 'cpuSecondsPerGB'];

export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export interface ContenderResult {
  id: string;
  label: string;
  /** Why there are no figures (not installed, failed to come up in every run). */
  unavailable?: string;
  /** One per run; null where that run's setup failed. */
  samples: (Sample | null)[];
  failures: string[];
  kernelPath: boolean;
  summary: Partial<Record<Metric, Spread>>;
  /** Median over runs of tcp1 / kernel vxlan's tcp1 in the same run. */
  tcp1VsKernelVxlan?: Spread;
}

export function spread(values: readonly (number | null | undefined)[]): Spread | undefined {
  const xs = values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b);
  if (xs.length === 0) return undefined;
  const mid = Math.floor(xs.length / 2);
  const median = xs.length % 2 === 1 ? (xs[mid] as number) : ((xs[mid - 1] as number) + (xs[mid] as number)) / 2;
  return { median, min: xs[0] as number, max: xs[xs.length - 1] as number, n: xs.length };
}

export function summarize(result: ContenderResult, kernelVxlan: ContenderResult | undefined): void {
  for (const metric of METRICS) {
    const s = spread(result.samples.map((sample) => sample?.[metric]));
    if (s !== undefined) result.summary[metric] = s;
  }
  if (kernelVxlan !== undefined) {
    const ratios = result.samples.map((sample, run) => {
      const base = kernelVxlan.samples[run]?.tcp1Gbps;
      return sample?.tcp1Gbps != null && base != null && base > 0 ? sample.tcp1Gbps / base : null;
    });
    const s = spread(ratios);
    if (s !== undefined) result.tcp1VsKernelVxlan = s;
  }
}

function digits(value: number): string {
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/** A spread as a table cell: the median, with (min–max) when there was more than one run; – for none. */
export function cell(s: Spread | undefined): string {
  if (s === undefined) return '–';
  return s.n === 1 ? digits(s.median) : `${digits(s.median)} (${digits(s.min)}–${digits(s.max)})`;
}

export function markdown(results: readonly ContenderResult[], heading: string, notes: readonly string[]): string {
  const lines = [
    heading,
    '',
    '| contender | TCP 1 stream Gbit/s | vs kernel vxlan | TCP 4 streams Gbit/s | UDP 64 B kpps received | RTT p50 µs | RTT p99 µs | CPU s/GB |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const r of results) {
    if (r.unavailable !== undefined) {
      lines.push(`| ${r.label} | did not run: ${r.unavailable.replaceAll('|', '\\|').replaceAll('\n', ' ')} | | | | | | |`);
      continue;
    }
    const s = r.summary;
    const ratio = r.tcp1VsKernelVxlan === undefined ? '–' : `${(r.tcp1VsKernelVxlan.median * 100).toFixed(0)} %`;
    const cpu = r.kernelPath ? 'kernel' : cell(s.cpuSecondsPerGB);
    lines.push(`| ${r.label} | ${cell(s.tcp1Gbps)} | ${ratio} | ${cell(s.tcp4Gbps)} | ${cell(s.udp64Kpps)} | ${cell(s.rttP50Us)} | ${cell(s.rttP99Us)} | ${cpu} |`);
  }
  lines.push('', ...notes.map((note) => `- ${note}`));
  const failed = results.filter((r) => r.unavailable === undefined && r.failures.length > 0);
  if (failed.length > 0) {
    lines.push('', 'Runs or figures that failed:');
    for (const r of failed) for (const failure of r.failures) lines.push(`- ${r.label}: ${failure.replaceAll('\n', ' ').slice(0, 300)}`);
  }
  return `${lines.join('\n')}\n`;
}

function escapeXml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

/** A step for the axis: 1, 2 or 5 times a power of ten, giving about five ticks. */
function tickStep(max: number): number {
  const raw = max / 5;
  const power = 10 ** Math.floor(Math.log10(raw));
  return ([1, 2, 5, 10].map((m) => m * power).find((step) => step >= raw) ?? 10 * power);
}

/** Single-stream TCP throughput per contender, fastest first, with min–max whiskers and the kernel vxlan as a dashed line. */
export function svgChart(results: readonly ContenderResult[], title: string, subtitle: string): string {
  const rows = [...results].sort((a, b) => (b.summary.tcp1Gbps?.median ?? -1) - (a.summary.tcp1Gbps?.median ?? -1));
  const width = 860;
  const labelWidth = 250;
  const right = 110;
  const top = 88;
  const rowHeight = 34;
  const barHeight = 20;
  const plotWidth = width - labelWidth - right;
  const height = top + rows.length * rowHeight + 50;
  const max = Math.max(1, ...rows.map((r) => r.summary.tcp1Gbps?.max ?? 0));
  const step = tickStep(max);
  const axisMax = Math.ceil(max / step) * step;
  const x = (gbps: number) => labelWidth + (gbps / axisMax) * plotWidth;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="20" y="28" font-size="18" font-weight="bold" fill="#222">${escapeXml(title)}</text>`,
    `<text x="20" y="50" font-size="12" fill="#555">${escapeXml(subtitle)}</text>`,
  ];
  const bottom = top + rows.length * rowHeight;
  for (let tick = 0; tick <= axisMax + 1e-9; tick += step) {
    out.push(`<line x1="${x(tick).toFixed(1)}" y1="${top - 6}" x2="${x(tick).toFixed(1)}" y2="${bottom}" stroke="#e3e3e3"/>`);
    out.push(`<text x="${x(tick).toFixed(1)}" y="${bottom + 18}" font-size="12" fill="#555" text-anchor="middle">${Number(tick.toFixed(6))}</text>`);
  }
  out.push(`<text x="${(labelWidth + plotWidth / 2).toFixed(1)}" y="${bottom + 38}" font-size="12" fill="#333" text-anchor="middle">Gbit/s, iperf3 one TCP stream (bar: median, whisker: min–max)</text>`);
  // Drawn before the bars, which cover it where they pass it.
  const kernel = rows.find((r) => r.id === 'kernel-vxlan')?.summary.tcp1Gbps;
  if (kernel !== undefined) {
    const kx = x(kernel.median).toFixed(1);
    out.push(`<line x1="${kx}" y1="${top - 8}" x2="${kx}" y2="${bottom}" stroke="#1c7ed6" stroke-width="1.5" stroke-dasharray="5 4"/>`);
    out.push(`<text x="${kx}" y="${top - 12}" font-size="11" fill="#1c7ed6" text-anchor="middle">kernel vxlan ${digits(kernel.median)}</text>`);
  }
  for (const [i, r] of rows.entries()) {
    const y = top + i * rowHeight;
    const mid = y + rowHeight / 2;
    const s = r.summary.tcp1Gbps;
    const emphasis = r.id.startsWith('netctl');
    out.push(
      `<text x="${labelWidth - 10}" y="${mid + 4}" font-size="13" text-anchor="end" fill="#222"${emphasis ? ' font-weight="bold"' : ''}>${escapeXml(r.label)}</text>`,
    );
    if (s === undefined) {
      const why = r.unavailable ?? r.failures[0] ?? 'no figures';
      out.push(`<text x="${labelWidth + 6}" y="${mid + 4}" font-size="12" fill="#a33" font-style="italic">did not run: ${escapeXml(why.slice(0, 80))}</text>`);
      continue;
    }
    const colour = emphasis ? '#d9480f' : r.id === 'kernel-vxlan' ? '#1c7ed6' : r.id === 'veth' ? '#868e96' : '#74c0fc';
    out.push(`<rect x="${labelWidth}" y="${(mid - barHeight / 2).toFixed(1)}" width="${Math.max(1, x(s.median) - labelWidth).toFixed(1)}" height="${barHeight}" fill="${colour}"/>`);
    if (s.n > 1) {
      out.push(`<line x1="${x(s.min).toFixed(1)}" y1="${mid}" x2="${x(s.max).toFixed(1)}" y2="${mid}" stroke="#222" stroke-width="1.5"/>`);
      for (const v of [s.min, s.max]) out.push(`<line x1="${x(v).toFixed(1)}" y1="${mid - 5}" x2="${x(v).toFixed(1)}" y2="${mid + 5}" stroke="#222" stroke-width="1.5"/>`);
    }
    const ratio = r.tcp1VsKernelVxlan !== undefined && r.id !== 'kernel-vxlan' ? `  (${(r.tcp1VsKernelVxlan.median * 100).toFixed(0)} % of kernel vxlan)` : '';
    const text = `${digits(s.median)}${ratio}`;
    // About 6.5 px per character at 12 px; a label that would run off the right edge goes inside the bar's end instead.
    const fits = x(s.max) + 8 + text.length * 6.5 <= width - 10;
    out.push(
      fits
        ? `<text x="${(x(s.max) + 8).toFixed(1)}" y="${mid + 4}" font-size="12" fill="#222">${escapeXml(text)}</text>`
        : `<text x="${(x(Math.min(s.median, s.min)) - 8).toFixed(1)}" y="${mid + 4}" font-size="12" fill="#fff" text-anchor="end">${escapeXml(text)}</text>`,
    );
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
