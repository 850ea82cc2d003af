/**
 * Elastic tabstops, after Go's text/tabwriter, for the docker-style tables of
 * `--format 'table …'`.
 *
 * Text is made of cells terminated by a tab ('\t', or '\v' for a soft tab)
 * and lines ended by '\n' (or '\f', which also ends every column). Tab-
 * terminated cells in contiguous lines form a column, padded to the widest
 * cell plus `padding` (at least `minWidth`). The last cell of a line is not
 * tab-terminated, so it belongs to no column and is never padded. A line
 * without any tab ends all columns above it. Widths count code points.
 */

/** Pad on the left instead of the right. */
export const ALIGN_RIGHT = 1 << 2;
/** Drop columns whose cells are all empty and soft-tab ('\v') terminated. */
export const DISCARD_EMPTY_COLUMNS = 1 << 3;
/** Print '|' between columns. */
export const DEBUG = 1 << 5;

interface Cell {
  readonly text: string;
  readonly width: number;
  /** Terminated by a hard tab '\t' (not a soft '\v' or a line end). */
  readonly htab: boolean;
}

export class TabWriter {
  private readonly minWidth: number;
  private readonly tabWidth: number;
  private readonly padding: number;
  private readonly padChar: string;
  private readonly flags: number;
  private lines: Cell[][] = [[]];
  private cellText = '';
  private widths: number[] = [];
  private output = '';

  constructor(minWidth: number, tabWidth: number, padding: number, padChar: string, flags = 0) {
    if (minWidth < 0 || tabWidth < 0 || padding < 0) {
      throw new RangeError('tabwriter: negative minWidth, tabWidth or padding');
    }
    if (padChar.length !== 1) throw new RangeError('tabwriter: padChar must be one character');
    this.minWidth = minWidth;
    this.tabWidth = tabWidth;
    this.padding = padding;
    this.padChar = padChar;
    // Tab padding cannot right-align: a tab's width depends on where it starts.
    this.flags = padChar === '\t' ? flags & ~ALIGN_RIGHT : flags;
  }

  write(text: string): void {
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const ch = text[i];
      if (ch !== '\t' && ch !== '\v' && ch !== '\n' && ch !== '\f') continue;
      this.cellText += text.slice(start, i);
      start = i + 1;
      const cellsInLine = this.terminateCell(ch === '\t');
      if (ch === '\n' || ch === '\f') {
        this.lines.push([]);
        // A line of one cell cannot affect later columns, so what came before can be laid out now.
        if (ch === '\f' || cellsInLine === 1) {
          this.flushBuffered();
          if (ch === '\f' && (this.flags & DEBUG) !== 0) this.output += '---\n';
        }
      }
    }
    this.cellText += text.slice(start);
  }

  /** Lays out everything written so far and returns the text not returned before. */
  flush(): string {
    this.flushBuffered();
    const out = this.output;
    this.output = '';
    return out;
  }

  private terminateCell(htab: boolean): number {
    const line = this.lines[this.lines.length - 1];
    if (line === undefined) throw new Error('tabwriter: no current line');
    line.push({ text: this.cellText, width: codePoints(this.cellText), htab });
    this.cellText = '';
    return line.length;
  }

  private flushBuffered(): void {
    if (this.cellText.length > 0) this.terminateCell(false);
    this.format(0, this.lines.length);
    this.lines = [[]];
    this.widths = [];
  }

  /** Lays out lines [line0, line1) given the widths of the columns to the left (this.widths). */
  private format(line0: number, line1: number): void {
    const column = this.widths.length;
    let first = line0;
    for (let current = line0; current < line1; current++) {
      if (column >= this.lineAt(current).length - 1) continue;
      // This line has a cell in this column: it starts a block of lines that do.
      this.writeLines(first, current);
      first = current;
      let width = this.minWidth;
      let discardable = true;
      for (; current < line1; current++) {
        const line = this.lineAt(current);
        if (column >= line.length - 1) break;
        const cell = line[column];
        if (cell === undefined) break;
        width = Math.max(width, cell.width + this.padding);
        if (cell.width > 0 || cell.htab) discardable = false;
      }
      if (discardable && (this.flags & DISCARD_EMPTY_COLUMNS) !== 0) width = 0;
      this.widths.push(width);
      this.format(first, current);
      this.widths.pop();
      first = current;
    }
    this.writeLines(first, line1);
  }

  private writeLines(line0: number, line1: number): void {
    for (let i = line0; i < line1; i++) {
      this.lineAt(i).forEach((cell, j) => {
        if (j > 0 && (this.flags & DEBUG) !== 0) this.output += '|';
        const width = this.widths[j];
        if (cell.text.length === 0) {
          if (width !== undefined) this.output += this.padTo(cell.width, width);
        } else if ((this.flags & ALIGN_RIGHT) === 0) {
          this.output += cell.text;
          if (width !== undefined) this.output += this.padTo(cell.width, width);
        } else {
          if (width !== undefined) this.output += this.padTo(cell.width, width);
          this.output += cell.text;
        }
      });
      // The last buffered line is the one still being written: it has no newline yet.
      if (i + 1 < this.lines.length) this.output += '\n';
    }
  }

  private padTo(textWidth: number, cellWidth: number): string {
    if (this.padChar !== '\t') return this.padChar.repeat(cellWidth - textWidth);
    if (this.tabWidth === 0) return '';
    const tabbedWidth = Math.ceil(cellWidth / this.tabWidth) * this.tabWidth;
    return '\t'.repeat(Math.ceil((tabbedWidth - textWidth) / this.tabWidth));
  }

  private lineAt(index: number): Cell[] {
    const line = this.lines[index];
    if (line === undefined) throw new Error(`tabwriter: no line ${index}`);
    return line;
  }
}

function codePoints(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}
