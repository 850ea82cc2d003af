/**
 * The parser, after Go's text/template/parse/parse.go: it builds the tree in
 * ast.ts from the lexer's tokens, checks function names and variables as Go
 * does at parse time, and words its errors like Go's ("template parsing
 * error: template: :1: …"). String and number literals are decoded here, with
 * Go's escapes and number syntax.
 */
import { InvalidArgument } from '../../errors.js';
import type { Arg, Command, Delimiter, Node, Pipe } from './ast.js';
import { lex, type Token, type TokenType } from './lexer.js';
import { goQuote } from './values.js';

class ParseFailure extends Error {
  constructor(
    message: string,
    readonly pos: number,
  ) {
    super(message);
  }
}

/** How Go prints a token in "unexpected … in …". */
function describeToken(token: Token): string {
  if (token.type === 'eof') return 'EOF';
  if (token.type === 'error') return token.value;
  if (token.type === 'keyword' || token.type === 'dot' || token.type === 'nil') return `<${token.value}>`;
  const chars = Array.from(token.value);
  if (chars.length > 10) return `${goQuote(chars.slice(0, 10).join(''))}...`;
  return goQuote(token.value);
}

const SIMPLE_ESCAPES: Record<string, string> = {
  a: '\x07',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
  v: '\v',
  '\\': '\\',
  "'": "'",
  '"': '"',
};

const HEX_ESCAPE_DIGITS: Record<string, number> = { x: 2, u: 4, U: 8 };

/** Go's strconv.Unquote for "…" and '…' literals; null on invalid syntax. */
function unquote(literal: string): string | null {
  const body = literal.slice(1, -1);
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const ch = body[i] ?? '';
    if (ch !== '\\') {
      out += ch;
      continue;
    }
    const kind = body[++i] ?? '';
    const simple = SIMPLE_ESCAPES[kind];
    if (simple !== undefined) {
      out += simple;
      continue;
    }
    const digits = HEX_ESCAPE_DIGITS[kind];
    if (digits !== undefined) {
      const hex = body.slice(i + 1, i + 1 + digits);
      if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== digits) return null;
      const code = Number.parseInt(hex, 16);
      if (code > 0x10ffff) return null;
      out += String.fromCodePoint(code);
      i += digits;
      continue;
    }
    const octal = body.slice(i, i + 3);
    if (!/^[0-7]{3}$/.test(octal)) return null;
    out += String.fromCharCode(Number.parseInt(octal, 8));
    i += 2;
  }
  return out;
}

function parseNumber(token: Token): number | null {
  if (token.type === 'charConstant') {
    const text = unquote(token.value);
    const chars = text === null ? [] : Array.from(text);
    return chars.length === 1 ? (chars[0]?.codePointAt(0) ?? null) : null;
  }
  const text = token.value.replace(/_/g, '');
  if (text.endsWith('i')) return null;
  const sign = text.startsWith('-') ? -1 : 1;
  const unsigned = text.replace(/^[+-]/, '');
  let value: number;
  if (/^0[xX][0-9a-fA-F]+$/.test(unsigned)) value = Number.parseInt(unsigned.slice(2), 16);
  else if (/^0[oO]?[0-7]+$/.test(unsigned)) value = Number.parseInt(unsigned.replace(/^0[oO]?/, ''), 8);
  else if (/^0[bB][01]+$/.test(unsigned)) value = Number.parseInt(unsigned.slice(2), 2);
  else if (/^(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/.test(unsigned)) value = Number(unsigned);
  else return null;
  return sign * value;
}

class Parser {
  private index = 0;
  private last: Token;
  /** Variables in scope, innermost last. */
  private vars: string[] = ['$'];
  private rangeDepth = 0;

  constructor(
    private readonly tokens: readonly Token[],
    private readonly functions: ReadonlySet<string>,
  ) {
    this.last = this.tokenAt(0);
  }

  parse(): Node[] {
    const root: Node[] = [];
    while (this.peek().type !== 'eof') {
      const node = this.textOrAction();
      if (node.kind === 'end' || node.kind === 'else') this.fail(`unexpected {{${node.kind}}}`);
      root.push(node);
    }
    return root;
  }

  private tokenAt(index: number): Token {
    const token = this.tokens[Math.min(index, this.tokens.length - 1)];
    if (token === undefined) throw new Error('template: empty token stream');
    return token;
  }

  private next(): Token {
    this.last = this.tokenAt(this.index++);
    return this.last;
  }

  private backup(): void {
    this.index--;
  }

  private peek(): Token {
    return this.tokenAt(this.index);
  }

  private nextNonSpace(): Token {
    let token = this.next();
    while (token.type === 'space') token = this.next();
    return token;
  }

  private peekNonSpace(): Token {
    while (this.peek().type === 'space') this.next();
    return this.peek();
  }

  private fail(message: string): never {
    throw new ParseFailure(message, this.last.pos);
  }

  private unexpected(token: Token, context: string): never {
    if (token.type === 'error') this.fail(token.value);
    this.fail(`unexpected ${describeToken(token)} in ${context}`);
  }

  private expect(type: TokenType, context: string): Token {
    const token = this.nextNonSpace();
    if (token.type !== type) this.unexpected(token, context);
    return token;
  }

  private textOrAction(): Node | Delimiter {
    const token = this.nextNonSpace();
    if (token.type === 'text') return { kind: 'text', text: token.value };
    if (token.type === 'leftDelim') return this.action();
    this.unexpected(token, 'input');
  }

  private itemList(): [Node[], Delimiter] {
    const list: Node[] = [];
    while (this.peekNonSpace().type !== 'eof') {
      const node = this.textOrAction();
      if (node.kind === 'end' || node.kind === 'else') return [list, node];
      list.push(node);
    }
    this.fail('unexpected EOF');
  }

  private action(): Node | Delimiter {
    const token = this.nextNonSpace();
    if (token.type === 'keyword') {
      switch (token.value) {
        case 'break':
        case 'continue': {
          const next = this.nextNonSpace();
          if (next.type !== 'rightDelim') this.unexpected(next, `{{${token.value}}}`);
          if (this.rangeDepth === 0) this.fail(`{{${token.value}}} outside {{range}}`);
          return { kind: token.value, pos: token.pos, text: `{{${token.value}}}` };
        }
        case 'else': {
          // "{{else if …" and "{{else with …" leave the keyword for parseControl.
          const peek = this.peekNonSpace();
          if (peek.type !== 'keyword' || (peek.value !== 'if' && peek.value !== 'with')) this.expect('rightDelim', 'else');
          return { kind: 'else' };
        }
        case 'end':
          this.expect('rightDelim', 'end');
          return { kind: 'end' };
        case 'if':
        case 'with':
        case 'range':
          return this.control(token.value);
        default:
          this.fail(`{{${token.value}}} is not supported`);
      }
    }
    this.backup();
    return { kind: 'action', pipe: this.pipeline('command', 'rightDelim') };
  }

  private control(context: 'if' | 'with' | 'range'): Node {
    const scope = this.vars.length;
    const pipe = this.pipeline(context, 'rightDelim');
    if (context === 'range') this.rangeDepth++;
    const [list, next] = this.itemList();
    if (context === 'range') this.rangeDepth--;
    let elseList: Node[] | null = null;
    if (next.kind === 'else') {
      const peek = this.peek();
      if (context !== 'range' && peek.type === 'keyword' && peek.value === context) {
        // {{if a}}…{{else if b}}…{{end}} is {{if a}}…{{else}}{{if b}}…{{end}}{{end}}.
        this.next();
        elseList = [this.control(context)];
      } else {
        const [list2, end] = this.itemList();
        if (end.kind !== 'end') this.fail(`expected end; found {{${end.kind}}}`);
        elseList = list2;
      }
    }
    this.vars.length = scope;
    return { kind: context, pipe, list, elseList };
  }

  private pipeline(context: string, end: 'rightDelim' | 'rightParen'): Pipe {
    const pos = this.peekNonSpace().pos;
    const decl: string[] = [];
    let isAssign = false;
    for (;;) {
      const variable = this.peekNonSpace();
      if (variable.type !== 'variable') break;
      const before = this.index;
      this.next();
      const after = this.peekNonSpace();
      if (after.type === 'assign' || after.type === 'declare') {
        this.next();
        isAssign = after.type === 'assign';
        decl.push(variable.value);
        this.vars.push(variable.value);
        break;
      }
      if (after.type === 'char' && after.value === ',') {
        this.next();
        decl.push(variable.value);
        this.vars.push(variable.value);
        if (context === 'range' && decl.length < 2) {
          const following = this.peekNonSpace().type;
          if (following === 'variable' || following === 'rightDelim' || following === 'rightParen') continue;
          this.fail('range can only initialize variables');
        }
        this.fail(`too many declarations in ${context}`);
      }
      this.index = before;
      break;
    }
    const cmds: Command[] = [];
    for (;;) {
      const token = this.nextNonSpace();
      if (token.type === end) break;
      switch (token.type) {
        case 'bool':
        case 'charConstant':
        case 'dot':
        case 'field':
        case 'identifier':
        case 'number':
        case 'nil':
        case 'rawString':
        case 'string':
        case 'variable':
        case 'leftParen':
          this.backup();
          cmds.push(this.command());
          break;
        default:
          this.unexpected(token, context);
      }
    }
    if (cmds.length === 0) this.fail(`missing value for ${context}`);
    cmds.slice(1).forEach((cmd, i) => {
      const first = cmd.args[0];
      if (first !== undefined && ['literal', 'dot', 'nil'].includes(first.kind)) {
        this.fail(`non executable command in pipeline stage ${i + 2}`);
      }
    });
    const declText = decl.length > 0 ? `${decl.join(', ')} ${isAssign ? '=' : ':='} ` : '';
    return { pos, text: declText + cmds.map((cmd) => cmd.text).join(' | '), decl, isAssign, cmds };
  }

  private command(): Command {
    const pos = this.peekNonSpace().pos;
    const args: Arg[] = [];
    for (;;) {
      this.peekNonSpace();
      const operand = this.operand();
      if (operand !== null) args.push(operand);
      const token = this.next();
      if (token.type === 'space') continue;
      if (token.type === 'rightDelim' || token.type === 'rightParen') this.backup();
      else if (token.type !== 'pipe') this.unexpected(token, 'operand');
      break;
    }
    if (args.length === 0) this.fail('empty command');
    return { pos, text: args.map((arg) => arg.text).join(' '), args };
  }

  private operand(): Arg | null {
    const node = this.term();
    if (node === null || this.peek().type !== 'field') return node;
    // Go places a chain at its first trailing field.
    const pos = this.peek().pos;
    const idents: string[] = [];
    while (this.peek().type === 'field') idents.push(this.next().value.slice(1));
    const suffix = idents.map((ident) => `.${ident}`).join('');
    switch (node.kind) {
      case 'field':
        return { kind: 'field', pos, text: node.text + suffix, idents: [...node.idents, ...idents] };
      case 'variable':
        return { kind: 'variable', pos, text: node.text + suffix, name: node.name, idents: [...node.idents, ...idents] };
      case 'literal':
      case 'nil':
      case 'dot':
        this.fail(`unexpected . after term ${goQuote(node.text)}`);
      default:
        return { kind: 'chain', pos, text: node.text + suffix, node, idents };
    }
  }

  private term(): Arg | null {
    const token = this.nextNonSpace();
    const { pos, value: text } = token;
    switch (token.type) {
      case 'identifier':
        if (!this.functions.has(text)) this.fail(`function ${goQuote(text)} not defined`);
        return { kind: 'identifier', pos, text, name: text };
      case 'dot':
        return { kind: 'dot', pos, text };
      case 'nil':
        return { kind: 'nil', pos, text };
      case 'variable':
        if (!this.vars.includes(text)) this.fail(`undefined variable ${goQuote(text)}`);
        return { kind: 'variable', pos, text, name: text, idents: [] };
      case 'field':
        return { kind: 'field', pos, text, idents: [text.slice(1)] };
      case 'bool':
        return { kind: 'literal', pos, text, value: text === 'true' };
      case 'number':
      case 'charConstant': {
        const value = parseNumber(token);
        if (value === null) this.fail(`illegal number syntax: ${goQuote(text)}`);
        return { kind: 'literal', pos, text, value };
      }
      case 'leftParen': {
        const pipe = this.pipeline('parenthesized pipeline', 'rightParen');
        return { kind: 'pipe', pos, text: `(${pipe.text})`, pipe };
      }
      case 'string': {
        const value = unquote(text);
        if (value === null) this.fail('invalid syntax');
        return { kind: 'literal', pos, text, value };
      }
      case 'rawString':
        return { kind: 'literal', pos, text, value: text.slice(1, -1).replace(/\r/g, '') };
      default:
        this.backup();
        return null;
    }
  }
}

export function lineOf(source: string, pos: number): number {
  let line = 1;
  for (let i = source.indexOf('\n'); i >= 0 && i < pos; i = source.indexOf('\n', i + 1)) line++;
  return line;
}

export function parse(source: string, functions: ReadonlySet<string>): Node[] {
  try {
    return new Parser(lex(source), functions).parse();
  } catch (err) {
    if (!(err instanceof ParseFailure)) throw err;
    throw new InvalidArgument(`template parsing error: template: :${lineOf(source, err.pos)}: ${err.message}`);
  }
}
