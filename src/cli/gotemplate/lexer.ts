/**
 * The lexer for Go's template language, after Go's text/template/parse/lex.go:
 * it turns a template's source into text, delimiters and the tokens of its
 * actions, trimming spaces at `{{- ` and ` -}}` and dropping comments. A lex
 * error ends the stream as an `error` token, which the parser reports as Go
 * does; nothing here knows about the parse tree or about values.
 */

export type TokenType =
  | 'text'
  | 'leftDelim'
  | 'rightDelim'
  | 'space'
  | 'field'
  | 'variable'
  | 'identifier'
  | 'keyword'
  | 'dot'
  | 'nil'
  | 'bool'
  | 'number'
  | 'charConstant'
  | 'string'
  | 'rawString'
  | 'char'
  | 'pipe'
  | 'declare'
  | 'assign'
  | 'leftParen'
  | 'rightParen'
  | 'eof'
  | 'error';

export interface Token {
  readonly type: TokenType;
  /** Source text of the token; the message for an error token. */
  readonly value: string;
  readonly pos: number;
}

const KEYWORDS = new Set(['block', 'break', 'continue', 'define', 'else', 'end', 'if', 'range', 'template', 'with']);
const ALPHANUMERIC = /[\p{L}\p{Nd}_]*/uy;
const NUMBER = /[+-]?(?:0[xX][0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?(?:[pP][+-]?[0-9_]+)?|0[oO][0-7_]*|0[bB][01_]*|[0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9_]+)?)i?/y;

function isSpace(ch: string | undefined): boolean {
  return ch === ' ' || ch === '\t' || ch === '\r' || ch === '\n';
}

function isAlphanumeric(ch: string | undefined): boolean {
  return ch !== undefined && /^[\p{L}\p{Nd}_]$/u.test(ch);
}

function codePointAt(input: string, pos: number): string {
  const cp = input.codePointAt(pos);
  return cp === undefined ? '' : String.fromCodePoint(cp);
}

/** Go's %#U: U+007D '}'. */
function describeRune(ch: string): string {
  const cp = ch.codePointAt(0) ?? 0;
  const hex = cp.toString(16).toUpperCase().padStart(4, '0');
  return /^\P{C}$/u.test(ch) ? `U+${hex} '${ch}'` : `U+${hex}`;
}

export function lex(input: string): Token[] {
  const tokens: Token[] = [];
  let pos = 0;
  const emit = (type: TokenType, start: number): void => {
    tokens.push({ type, value: input.slice(start, pos), pos: start });
  };
  const fail = (message: string, at: number): Token[] => {
    tokens.push({ type: 'error', value: message, pos: at });
    return tokens;
  };
  const skipSpace = (): void => {
    while (isSpace(input[pos])) pos++;
  };
  /** A right delimiter here, with its trim marker (" -}}") or without. */
  const atRightDelim = (): 'plain' | 'trim' | null => {
    if (isSpace(input[pos]) && input[pos + 1] === '-' && input.startsWith('}}', pos + 2)) return 'trim';
    return input.startsWith('}}', pos) ? 'plain' : null;
  };
  const atTerminator = (): boolean => {
    const ch = input[pos];
    if (ch === undefined || isSpace(ch) || '.,|:()'.includes(ch)) return true;
    return input.startsWith('}}', pos);
  };
  const scanAlphanumeric = (): void => {
    ALPHANUMERIC.lastIndex = pos;
    ALPHANUMERIC.test(input);
    pos = ALPHANUMERIC.lastIndex;
  };
  /** Scans a quoted literal ending at `quote`; false when unterminated. */
  const scanQuoted = (quote: string): boolean => {
    pos++;
    for (;;) {
      const ch = input[pos++];
      if (ch === '\\') {
        const escaped = input[pos++];
        if (escaped !== undefined && escaped !== '\n') continue;
        return false;
      }
      if (ch === undefined || ch === '\n') return false;
      if (ch === quote) return true;
    }
  };

  for (;;) {
    const open = input.indexOf('{{', pos);
    if (open < 0) {
      if (pos < input.length) {
        const start = pos;
        pos = input.length;
        emit('text', start);
      }
      tokens.push({ type: 'eof', value: '', pos });
      return tokens;
    }
    const trimLeft = input[open + 2] === '-' && isSpace(input[open + 3]);
    let textEnd = open;
    if (trimLeft) while (textEnd > pos && isSpace(input[textEnd - 1])) textEnd--;
    if (textEnd > pos) tokens.push({ type: 'text', value: input.slice(pos, textEnd), pos });
    pos = open + 2 + (trimLeft ? 2 : 0);

    if (input.startsWith('/*', pos)) {
      const close = input.indexOf('*/', pos + 2);
      if (close < 0) return fail('unclosed comment', open);
      pos = close + 2;
      const delim = atRightDelim();
      if (delim === null) return fail('comment ends before closing delimiter', open);
      pos += delim === 'trim' ? 4 : 2;
      if (delim === 'trim') skipSpace();
      continue;
    }

    tokens.push({ type: 'leftDelim', value: '{{', pos: open });
    let parenDepth = 0;
    for (;;) {
      const delim = atRightDelim();
      if (delim !== null) {
        if (parenDepth > 0) return fail('unclosed left paren', pos);
        if (delim === 'trim') pos += 2;
        const start = pos;
        pos += 2;
        emit('rightDelim', start);
        if (delim === 'trim') skipSpace();
        break;
      }
      const start = pos;
      const ch = input[pos];
      if (ch === undefined) return fail('unclosed action', open);
      if (isSpace(ch)) {
        skipSpace();
        // The space right before "-}}" belongs to the trim marker.
        if (input.startsWith('-}}', pos)) {
          pos--;
          if (pos === start) continue;
        }
        emit('space', start);
      } else if (ch === '=') {
        pos++;
        emit('assign', start);
      } else if (ch === ':') {
        if (input[pos + 1] !== '=') return fail('expected :=', pos);
        pos += 2;
        emit('declare', start);
      } else if (ch === '|') {
        pos++;
        emit('pipe', start);
      } else if (ch === '"') {
        if (!scanQuoted('"')) return fail('unterminated quoted string', start);
        emit('string', start);
      } else if (ch === "'") {
        if (!scanQuoted("'")) return fail('unterminated character constant', start);
        emit('charConstant', start);
      } else if (ch === '`') {
        const close = input.indexOf('`', pos + 1);
        if (close < 0) return fail('unterminated raw quoted string', start);
        pos = close + 1;
        emit('rawString', start);
      } else if (ch === '$' || (ch === '.' && pos + 1 < input.length && !/[0-9]/.test(input[pos + 1] ?? ''))) {
        pos++;
        if (atTerminator()) {
          emit(ch === '$' ? 'variable' : 'dot', start);
          continue;
        }
        scanAlphanumeric();
        if (!atTerminator()) return fail(`bad character ${describeRune(codePointAt(input, pos))}`, pos);
        emit(ch === '$' ? 'variable' : 'field', start);
      } else if (ch === '.' || ch === '+' || ch === '-' || /[0-9]/.test(ch)) {
        NUMBER.lastIndex = pos;
        NUMBER.test(input);
        pos = NUMBER.lastIndex;
        if (isAlphanumeric(codePointAt(input, pos))) {
          pos += codePointAt(input, pos).length;
          return fail(`bad number syntax: ${JSON.stringify(input.slice(start, pos))}`, start);
        }
        emit('number', start);
      } else if (isAlphanumeric(codePointAt(input, pos))) {
        scanAlphanumeric();
        if (!atTerminator()) return fail(`bad character ${describeRune(codePointAt(input, pos))}`, pos);
        const word = input.slice(start, pos);
        if (KEYWORDS.has(word)) emit('keyword', start);
        else if (word === 'nil') emit('nil', start);
        else if (word === 'true' || word === 'false') emit('bool', start);
        else emit('identifier', start);
      } else if (ch === '(') {
        pos++;
        parenDepth++;
        emit('leftParen', start);
      } else if (ch === ')') {
        pos++;
        parenDepth--;
        if (parenDepth < 0) return fail('unexpected right paren', start);
        emit('rightParen', start);
      } else if (ch >= ' ' && ch <= '~') {
        pos++;
        emit('char', start);
      } else {
        return fail(`unrecognized character in action: ${describeRune(codePointAt(input, pos))}`, pos);
      }
    }
  }
}
