/**
 * Execution, after Go's text/template/exec.go: walks a parse tree against the
 * data, evaluating fields, methods, variables and function calls, and keeps
 * what was written before an error, as Go's Execute does. Errors name the
 * line, column and node as Go's do ("template: :1:2: executing "" at <.X>: …").
 */
import { InvalidArgument } from '../../errors.js';
import type { Arg, Command, Located, Node, Pipe } from './ast.js';
import { convertArg, WrongType, type FunctionTable, type ParamKind } from './functions.js';
import { lineOf } from './parser.js';
import { formatValue, goQuote, isStruct, isTrue, sortedEntries, typeName } from './values.js';

/** No final value was piped into a command. */
const MISSING = Symbol('missing');
type Final = unknown;

class BreakSignal {}
class ContinueSignal {}
const BREAK = new BreakSignal();
const CONTINUE = new ContinueSignal();

class ExecFailure extends Error {
  constructor(
    readonly node: Located,
    message: string,
  ) {
    super(message);
  }
}

class Execution {
  output = '';
  private readonly vars: { name: string; value: unknown }[];

  constructor(
    private readonly functions: FunctionTable,
    data: unknown,
  ) {
    this.vars = [{ name: '$', value: data }];
  }

  walkList(dot: unknown, list: readonly Node[]): void {
    for (const node of list) this.walk(dot, node);
  }

  private walk(dot: unknown, node: Node): void {
    switch (node.kind) {
      case 'text':
        this.output += node.text;
        return;
      case 'action': {
        const value = this.evalPipeline(dot, node.pipe);
        if (node.pipe.decl.length === 0) this.print(node.pipe, value);
        return;
      }
      case 'if':
      case 'with': {
        const mark = this.vars.length;
        const value = this.evalPipeline(dot, node.pipe);
        if (isTrue(value)) this.walkList(node.kind === 'with' ? value : dot, node.list);
        else if (node.elseList !== null) this.walkList(dot, node.elseList);
        this.vars.length = mark;
        return;
      }
      case 'range':
        this.walkRange(dot, node.pipe, node.list, node.elseList);
        return;
      case 'break':
        throw BREAK;
      case 'continue':
        throw CONTINUE;
    }
  }

  private walkRange(dot: unknown, pipe: Pipe, list: readonly Node[], elseList: readonly Node[] | null): void {
    const mark = this.vars.length;
    const value = this.evalPipeline(dot, pipe);
    let entries: [unknown, unknown][];
    if (Array.isArray(value)) entries = value.map((item, i) => [i, item]);
    else if (value instanceof Map) entries = sortedEntries(value);
    else if (typeof value === 'number' && Number.isInteger(value)) {
      if (pipe.decl.length > 1) throw new ExecFailure(pipe, `can't use ${value} to iterate over more than one variable`);
      entries = Array.from({ length: Math.max(0, value) }, (_, i) => [i, i]);
    } else if (value === null || value === undefined) entries = [];
    else throw new ExecFailure(pipe, `range can't iterate over ${formatValue(value)}`);

    for (const [key, item] of entries) {
      if (pipe.decl.length > 0) {
        const [first, second] = pipe.decl;
        if (pipe.isAssign) {
          if (second === undefined) this.setVar(pipe, first ?? '', item);
          else {
            this.setVar(pipe, first ?? '', key);
            this.setVar(pipe, second, item);
          }
        } else {
          // Declared variables sit on top of the stack: the element last, the key below it.
          this.setTopVar(1, item);
          if (second !== undefined) this.setTopVar(2, key);
        }
      }
      const iterationMark = this.vars.length;
      try {
        this.walkList(item, list);
      } catch (signal) {
        if (signal === BREAK) break;
        if (signal !== CONTINUE) throw signal;
      } finally {
        this.vars.length = iterationMark;
      }
    }
    if (entries.length === 0 && elseList !== null) this.walkList(dot, elseList);
    this.vars.length = mark;
  }

  private print(node: Located, value: unknown): void {
    if (value === undefined) {
      this.output += '<no value>';
      return;
    }
    if (typeof value === 'function') throw new ExecFailure(node, `can't print ${node.text} of type func`);
    this.output += formatValue(value);
  }

  private setVar(node: Located, name: string, value: unknown): void {
    for (let i = this.vars.length - 1; i >= 0; i--) {
      const variable = this.vars[i];
      if (variable?.name === name) {
        variable.value = value;
        return;
      }
    }
    throw new ExecFailure(node, `undefined variable: ${name}`);
  }

  private setTopVar(depth: number, value: unknown): void {
    const variable = this.vars[this.vars.length - depth];
    if (variable !== undefined) variable.value = value;
  }

  private varValue(node: Located, name: string): unknown {
    for (let i = this.vars.length - 1; i >= 0; i--) {
      const variable = this.vars[i];
      if (variable?.name === name) return variable.value;
    }
    throw new ExecFailure(node, `undefined variable: ${name}`);
  }

  private evalPipeline(dot: unknown, pipe: Pipe): unknown {
    let value: Final = MISSING;
    for (const cmd of pipe.cmds) value = this.evalCommand(dot, cmd, value);
    for (const name of pipe.decl) {
      if (pipe.isAssign) this.setVar(pipe, name, value);
      else this.vars.push({ name, value });
    }
    return value;
  }

  private notAFunction(args: readonly Arg[], final: Final): void {
    const first = args[0];
    if (first !== undefined && (args.length > 1 || final !== MISSING)) {
      throw new ExecFailure(first, `can't give argument to non-function ${first.text}`);
    }
  }

  private evalCommand(dot: unknown, cmd: Command, final: Final): unknown {
    const first = cmd.args[0];
    if (first === undefined) throw new ExecFailure(cmd, 'empty command');
    switch (first.kind) {
      case 'field':
        return this.evalFieldChain(dot, dot, first, first.idents, cmd.args, final);
      case 'chain':
        return this.evalFieldChain(dot, this.evalArg(dot, first.node), first, first.idents, cmd.args, final);
      case 'variable': {
        const value = this.varValue(first, first.name);
        if (first.idents.length === 0) {
          this.notAFunction(cmd.args, final);
          return value;
        }
        return this.evalFieldChain(dot, value, first, first.idents, cmd.args, final);
      }
      case 'identifier':
        return this.evalFunction(dot, first.name, cmd, cmd.args, final);
      case 'pipe':
        this.notAFunction(cmd.args, final);
        return this.evalPipeline(dot, first.pipe);
      case 'nil':
        this.notAFunction(cmd.args, final);
        throw new ExecFailure(first, 'nil is not a command');
      case 'dot':
        this.notAFunction(cmd.args, final);
        return dot;
      case 'literal':
        this.notAFunction(cmd.args, final);
        return first.value;
    }
  }

  private evalArg(dot: unknown, arg: Arg): unknown {
    switch (arg.kind) {
      case 'dot':
        return dot;
      case 'nil':
        return null;
      case 'literal':
        return arg.value;
      case 'field':
        return this.evalFieldChain(dot, dot, arg, arg.idents, [arg], MISSING);
      case 'chain':
        return this.evalFieldChain(dot, this.evalArg(dot, arg.node), arg, arg.idents, [arg], MISSING);
      case 'variable': {
        const value = this.varValue(arg, arg.name);
        return arg.idents.length === 0 ? value : this.evalFieldChain(dot, value, arg, arg.idents, [arg], MISSING);
      }
      case 'identifier':
        return this.evalFunction(dot, arg.name, arg, [arg], MISSING);
      case 'pipe':
        return this.evalPipeline(dot, arg.pipe);
    }
  }

  private evalFieldChain(
    dot: unknown,
    receiver: unknown,
    node: Located,
    idents: readonly string[],
    args: readonly Arg[],
    final: Final,
  ): unknown {
    let current = receiver;
    idents.forEach((name, i) => {
      const last = i === idents.length - 1;
      current = last ? this.evalField(dot, name, node, args, final, current) : this.evalField(dot, name, node, [], MISSING, current);
    });
    return current;
  }

  private evalField(dot: unknown, name: string, node: Located, args: readonly Arg[], final: Final, receiver: unknown): unknown {
    // An invalid receiver (a missing map key further up) yields no value, as in Go.
    if (receiver === undefined) return undefined;
    if (receiver === null) throw new ExecFailure(node, `nil pointer evaluating interface {}.${name}`);
    const hasArgs = args.length > 1 || final !== MISSING;
    if (receiver instanceof Map) {
      if (hasArgs) throw new ExecFailure(node, `${name} is not a method but has arguments`);
      return receiver.get(name);
    }
    if (isStruct(receiver) && hasField(receiver, name)) {
      const field: unknown = (receiver as Record<string, unknown>)[name];
      if (typeof field === 'function') {
        return this.callMethod(dot, receiver, field as (...values: unknown[]) => unknown, name, node, args, final);
      }
      if (hasArgs) throw new ExecFailure(node, `${name} has arguments but cannot be invoked as function`);
      return field;
    }
    throw new ExecFailure(node, `can't evaluate field ${name} in type ${typeName(receiver)}`);
  }

  private callMethod(
    dot: unknown,
    receiver: object,
    method: (...args: unknown[]) => unknown,
    name: string,
    node: Located,
    args: readonly Arg[],
    final: Final,
  ): unknown {
    const argv = args.slice(1).map((arg) => this.evalArg(dot, arg));
    if (final !== MISSING) argv.push(final);
    if (argv.length < method.length) {
      throw new ExecFailure(node, `wrong number of args for ${name}: want ${method.length} got ${argv.length}`);
    }
    try {
      return method.apply(receiver, argv);
    } catch (err) {
      throw new ExecFailure(node, `error calling ${name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private evalFunction(dot: unknown, name: string, node: Located, args: readonly Arg[], final: Final): unknown {
    const func = this.functions.get(name);
    if (func === undefined) throw new ExecFailure(node, `${goQuote(name)} is not a defined function`);
    const operands = args.slice(1);
    const count = operands.length + (final === MISSING ? 0 : 1);
    const fixed = func.params.length;
    if (func.variadic === undefined ? count !== fixed : count < fixed) {
      const want = func.variadic === undefined ? `${fixed}` : `at least ${fixed}`;
      throw new ExecFailure(node, `wrong number of args for ${name}: want ${want} got ${count}`);
    }
    const kindAt = (i: number): ParamKind => func.params[i] ?? func.variadic ?? 'any';
    const convert = (i: number, value: unknown, at: Located): unknown => {
      try {
        return convertArg(kindAt(i), value);
      } catch (err) {
        if (err instanceof WrongType) throw new ExecFailure(at, err.message);
        throw err;
      }
    };
    if (name === 'and' || name === 'or') {
      // Short-circuit: stop at the first argument that decides the result.
      let value: unknown;
      for (const [i, arg] of operands.entries()) {
        value = convert(i, this.evalArg(dot, arg), arg);
        if (isTrue(value) === (name === 'or')) return value;
      }
      return final === MISSING ? value : final;
    }
    const argv = operands.map((arg, i) => convert(i, this.evalArg(dot, arg), arg));
    if (final !== MISSING) argv.push(convert(operands.length, final, node));
    try {
      return (func.call as (...values: unknown[]) => unknown)(...argv);
    } catch (err) {
      throw new ExecFailure(node, `error calling ${name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}

/** A field of a struct: own or inherited from a class, never from Object.prototype. */
function hasField(value: object, name: string): boolean {
  for (let proto: object | null = value; proto !== null && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    if (Object.prototype.hasOwnProperty.call(proto, name)) return true;
  }
  return false;
}

interface Rendered {
  readonly output: string;
  /** Set when execution stopped early; `output` holds what was written before. */
  readonly error?: InvalidArgument;
}

export function render(source: string, root: readonly Node[], data: unknown, functions: FunctionTable): Rendered {
  const execution = new Execution(functions, data);
  try {
    execution.walkList(data, root);
    return { output: execution.output };
  } catch (err) {
    if (!(err instanceof ExecFailure)) throw err;
    const { pos, text } = err.node;
    const lineStart = source.lastIndexOf('\n', pos - 1) + 1;
    const where = `${lineOf(source, pos)}:${pos - lineStart}`;
    const error = new InvalidArgument(`template: :${where}: executing "" at <${text}>: ${err.message}`);
    return { output: execution.output, error };
  }
}
