import test, { type ExecutionContext } from 'ava';
import { InvalidArgument } from '../../src/errors.js';
import { TabWriter, ALIGN_RIGHT } from '../../src/cli/tabwriter.js';
import { formatRows, parseTemplate } from '../../src/cli/gotemplate/index.js';

/** A `docker network inspect` object as the CLI would hand it over: maps wrapped in Map. */
function inspectObject() {
  return {
    Name: 'web',
    Id: '3f2a9c1b7d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4',
    Created: '2024-05-01T10:11:12.123456789Z',
    Scope: 'local',
    Driver: 'bridge',
    EnableIPv6: false,
    IPAM: {
      Driver: 'default',
      Options: new Map<string, string>(),
      Config: [
        { Subnet: '172.18.0.0/16', IPRange: '', Gateway: '172.18.0.1', AuxiliaryAddresses: new Map<string, string>() },
        { Subnet: '172.19.0.0/16', IPRange: '172.19.1.0/24', Gateway: '172.19.0.1', AuxiliaryAddresses: new Map([['host1', '172.19.0.5']]) },
      ],
    },
    Internal: false,
    Attachable: true,
    Containers: new Map([
      ['c2', { Name: 'db', IPv4Address: '172.18.0.3/16' }],
      ['c1', { Name: 'app', IPv4Address: '172.18.0.2/16' }],
    ]),
    Options: new Map([
      ['com.docker.network.bridge.name', 'br-3f2a9c1b7d4e'],
      ['com.docker.network.driver.mtu', '1500'],
    ]),
    Labels: new Map([
      ['env', 'prod'],
      ['com.example.team', 'net'],
    ]),
  };
}

/** A `docker network ls` row: fields plus docker's Label method. */
class NetworkRow {
  constructor(
    readonly ID: string,
    readonly Name: string,
    readonly Driver: string,
    readonly Scope: string,
    readonly Internal: boolean,
    private readonly labels: Map<string, string>,
  ) {}

  Label(name: string): string {
    return this.labels.get(name) ?? '';
  }
}

const rows = [
  new NetworkRow('3f2a9c1b7d4e', 'web', 'bridge', 'local', false, new Map([['env', 'prod']])),
  new NetworkRow('0b1c2d3e4f5a', 'backend-overlay', 'overlay', 'swarm', true, new Map()),
];

const HEADERS = {
  ID: 'NETWORK ID',
  Name: 'NAME',
  Driver: 'DRIVER',
  Scope: 'SCOPE',
  CreatedAt: 'CREATED AT',
  IPv6: 'IPV6',
  Internal: 'INTERNAL',
  Labels: 'LABELS',
};

const DEFAULT_TABLE = 'table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}';

const render = (source: string, data: unknown): string => parseTemplate(source).execute(data);

function parseError(t: ExecutionContext, source: string): string {
  const error = t.throws(() => parseTemplate(source), { instanceOf: InvalidArgument });
  return error?.message ?? '';
}

function execError(t: ExecutionContext, source: string, data: unknown): string {
  const template = parseTemplate(source);
  const error = t.throws(() => template.execute(data), { instanceOf: InvalidArgument });
  return error?.message ?? '';
}

// --- the forms people use with docker network --------------------------------

test('fields and text', (t) => {
  const net = inspectObject();
  t.is(render('{{.Name}}', net), 'web');
  t.is(render('{{.Id}}: {{.Driver}}', net), `${net.Id}: bridge`);
  t.is(render('plain text only', net), 'plain text only');
  t.is(render('{{.IPAM.Driver}}', net), 'default');
});

test('json of the whole object: struct fields in order, maps with sorted keys', (t) => {
  const out = render('{{json .}}', { Name: 'web', Labels: new Map([['b', '2'], ['a', '<&>']]), Config: [], Nil: null });
  t.is(out, '{"Name":"web","Labels":{"a":"<&>","b":"2"},"Config":[],"Nil":null}');
});

test('json of a nested list', (t) => {
  t.is(
    render('{{json .IPAM.Config}}', inspectObject()),
    '[{"Subnet":"172.18.0.0/16","IPRange":"","Gateway":"172.18.0.1","AuxiliaryAddresses":{}},' +
      '{"Subnet":"172.19.0.0/16","IPRange":"172.19.1.0/24","Gateway":"172.19.0.1","AuxiliaryAddresses":{"host1":"172.19.0.5"}}]',
  );
});

test('range over a list', (t) => {
  t.is(render('{{range .IPAM.Config}}{{.Subnet}}{{end}}', inspectObject()), '172.18.0.0/16172.19.0.0/16');
  t.is(render('{{range $i, $c := .IPAM.Config}}{{$i}}={{$c.Gateway}} {{end}}', inspectObject()), '0=172.18.0.1 1=172.19.0.1 ');
  t.is(render('{{range $c := .IPAM.Config}}{{$c.Subnet}};{{end}}', inspectObject()), '172.18.0.0/16;172.19.0.0/16;');
});

test('range over a map visits keys in sorted order', (t) => {
  t.is(render('{{range $k, $v := .Containers}}{{$v.Name}} {{end}}', inspectObject()), 'app db ');
  t.is(render('{{range $k, $v := .Labels}}{{$k}}={{$v}},{{end}}', inspectObject()), 'com.example.team=net,env=prod,');
});

test('range else, break and continue', (t) => {
  t.is(render('{{range .}}x{{else}}none{{end}}', []), 'none');
  t.is(render('{{range .}}x{{else}}none{{end}}', null), 'none');
  t.is(render('{{range .}}{{if eq . 3}}{{break}}{{end}}{{.}}{{end}}', [1, 2, 3, 4]), '12');
  t.is(render('{{range .}}{{if eq . 2}}{{continue}}{{end}}{{.}}{{end}}', [1, 2, 3]), '13');
  t.is(render('{{range 3}}{{.}}{{end}}', null), '012');
});

test('index into maps and lists', (t) => {
  const net = inspectObject();
  t.is(render('{{index .Options "com.docker.network.bridge.name"}}', net), 'br-3f2a9c1b7d4e');
  t.is(render('[{{index .Options "missing"}}]', net), '[]');
  t.is(render('{{(index .IPAM.Config 1).Subnet}}', net), '172.19.0.0/16');
  t.is(render('{{index .IPAM.Config 1 | json}}', { IPAM: { Config: [0, { A: 1 }] } }), '{"A":1}');
});

test('method call on a row: {{.Label "env"}}', (t) => {
  const [row] = rows;
  t.is(render('{{.Label "env"}}', row), 'prod');
  t.is(render('[{{.Label "missing"}}]', row), '[]');
  t.is(render('{{"env" | .Label}}', row), 'prod');
});

test('if, else if, else', (t) => {
  t.is(render('{{if .Internal}}yes{{else}}no{{end}}', { Internal: false }), 'no');
  t.is(render('{{if .Internal}}yes{{else}}no{{end}}', { Internal: true }), 'yes');
  const chain = '{{if eq .Driver "bridge"}}B{{else if eq .Driver "overlay"}}O{{else}}?{{end}}';
  t.is(render(chain, { Driver: 'bridge' }), 'B');
  t.is(render(chain, { Driver: 'overlay' }), 'O');
  t.is(render(chain, { Driver: 'macvlan' }), '?');
  // Go's truth: empty strings, lists and maps, zero and nil are false.
  t.is(render('{{if .}}t{{else}}f{{end}}', ''), 'f');
  t.is(render('{{if .}}t{{else}}f{{end}}', []), 'f');
  t.is(render('{{if .}}t{{else}}f{{end}}', new Map()), 'f');
  t.is(render('{{if .}}t{{else}}f{{end}}', 0), 'f');
  t.is(render('{{if .}}t{{else}}f{{end}}', {}), 't');
});

test('with and else with', (t) => {
  t.is(render('{{with .IPAM}}{{.Driver}}{{end}}', inspectObject()), 'default');
  t.is(render('{{with .Labels.missing}}{{.}}{{else}}unset{{end}}', inspectObject()), 'unset');
  t.is(render('{{with .A}}a={{.}}{{else with .B}}b={{.}}{{end}}', { A: '', B: 'x' }), 'b=x');
});

test('variables: declare, assign, $ and scope', (t) => {
  t.is(render('{{$n := .Name}}{{$n}}-{{$n = "x"}}{{$n}}', { Name: 'web' }), 'web-x');
  t.is(render('{{range .IPAM.Config}}{{$.Name}}:{{.Subnet}} {{end}}', inspectObject()), 'web:172.18.0.0/16 web:172.19.0.0/16 ');
  t.is(render('{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}', null), '2');
  t.is(parseError(t, '{{if true}}{{$y := 1}}{{end}}{{$y}}'), 'template parsing error: template: :1: undefined variable "$y"');
});

test('pipelines and parentheses', (t) => {
  // Go accepts a trailing pipe with nothing after it.
  t.is(render('{{.Name |}}', { Name: 'web' }), 'web');
  t.is(render('{{.Name | upper | printf "<%s>"}}', { Name: 'web' }), '<WEB>');
  t.is(render('{{join (split .S ",") "+"}}', { S: 'a,b,c' }), 'a+b+c');
});

test('trim markers', (t) => {
  t.is(render('a  {{- .X -}}  b', { X: 1 }), 'a1b');
  t.is(render('a\n\t{{- .X}}\n', { X: 1 }), 'a1\n');
  t.is(render('{{.X}} {{- /* comment */ -}} \n {{.X}}', { X: 1 }), '11');
  t.is(render('{{-3}}', null), '-3');
});

test('literals', (t) => {
  t.is(render('{{"a\\tb"}}|{{`raw\\n`}}|{{1.5}}|{{42}}|{{0x1F}}|{{true}}|{{\'a\'}}', null), 'a\tb|raw\\n|1.5|42|31|true|97');
});

test('docker functions: join split lower upper title pad truncate', (t) => {
  const data = { List: ['a', 'b', 'c'], S: 'Hello World-wide', Empty: '' };
  t.is(render('{{join .List ", "}}', data), 'a, b, c');
  t.is(render('{{split "a:b:c" ":"}}', data), '[a b c]');
  t.is(render('{{lower .S}} {{upper .S}}', data), 'hello world-wide HELLO WORLD-WIDE');
  t.is(render('{{title "hello wide_world foo-bar"}}', data), 'Hello Wide_world Foo-Bar');
  t.is(render('[{{pad .S 2 1}}][{{pad .Empty 2 1}}]', data), '[  Hello World-wide ][]');
  t.is(render('{{truncate .S 5}}|{{truncate "ab" 5}}', data), 'Hello|ab');
});

test('print, println, printf', (t) => {
  t.is(render('{{print "a" 1 2 "b"}}', null), 'a1 2b');
  t.is(render('{{println "a" 1}}', null), 'a 1\n');
  t.is(render('{{printf "%s=%d %v %q" "n" 7 .L "x"}}', { L: ['a', 'b'] }), 'n=7 [a b] "x"');
  t.is(render('{{printf "%-6s|%4d|%05d|%.2f" "ab" 42 7 3.14159}}', null), 'ab    |  42|00007|3.14');
  t.is(render('{{printf "%d %s"}}', null), '%!d(MISSING) %!s(MISSING)');
  t.is(render('{{printf "%d" "x"}}', null), '%!d(string=x)');
  t.is(render('{{printf "%s" "a" 1}}', null), 'a%!(EXTRA int=1)');
});

test('len, eq, ne, lt, not, and, or', (t) => {
  const net = inspectObject();
  t.is(render('{{len .Labels}} {{len .IPAM.Config}} {{len .Name}}', net), '2 2 3');
  t.is(render('{{eq .Driver "bridge"}} {{ne .Driver "bridge"}} {{eq .Driver "x" "bridge"}}', net), 'true false true');
  t.is(render('{{lt 1 2}} {{le 2 2}} {{gt "b" "a"}} {{ge 1 2}}', null), 'true true true false');
  t.is(render('{{not .Internal}} {{and .Attachable .Internal}} {{or .Internal "fallback"}}', net), 'true false fallback');
  // and/or stop at the deciding argument: the missing field after it is never evaluated.
  t.is(render('{{or .Name .Nope}} {{and .Internal .Nope}}', net), 'web false');
});

test('printing values the way Go fmt %v does', (t) => {
  const net = inspectObject();
  t.is(render('{{.Labels}}', net), 'map[com.example.team:net env:prod]');
  t.is(render('{{.IPAM.Config}}', net), '[{172.18.0.0/16  172.18.0.1 map[]} {172.19.0.0/16 172.19.1.0/24 172.19.0.1 map[host1:172.19.0.5]}]');
  t.is(render('{{.Labels.missing}}', net), '<no value>');
  t.is(render('{{.Labels.missing.deeper}}', net), '<no value>');
  t.is(render('{{.N}}|{{.U}}', { N: null, U: undefined }), '<nil>|<no value>');
  t.is(render('{{.}}', [1.5, 1234567.5, 0.00001, 100, true]), '[1.5 1.2345675e+06 1e-05 100 true]');
});

// --- errors ---------------------------------------------------------------

test('parse errors name the problem and the line', (t) => {
  const cases: [string, string][] = [
    ['{{.Name }', 'unexpected "}" in operand'],
    ['{{.Name}', "bad character U+007D '}'"],
    ['{{.Name', 'unclosed action'],
    ['{{if .Internal}}yes', 'unexpected EOF'],
    ['{{end}}', 'unexpected {{end}}'],
    ['{{else}}', 'unexpected {{else}}'],
    ['{{nope .Name}}', 'function "nope" not defined'],
    ['{{$x}}', 'undefined variable "$x"'],
    ['{{"abc}}', 'unterminated quoted string'],
    ['{{}}', 'missing value for command'],
    ['{{.A | "x"}}', 'non executable command in pipeline stage 2'],
    ['{{range}}{{end}}', 'missing value for range'],
    ['{{break}}', '{{break}} outside {{range}}'],
    ['{{(.A}}', 'unclosed left paren'],
    ['{{/* open', 'unclosed comment'],
  ];
  for (const [source, problem] of cases) {
    t.is(parseError(t, source), `template parsing error: template: :1: ${problem}`, source);
  }
  t.is(parseError(t, 'line one\n{{.A}}\n{{.B }'), 'template parsing error: template: :3: unexpected "}" in operand');
});

test('runtime errors give line, column, the failing node and the reason', (t) => {
  const net = inspectObject();
  t.is(execError(t, '{{.Foo}}', net), 'template: :1:2: executing "" at <.Foo>: can\'t evaluate field Foo in type object');
  t.is(execError(t, '{{.Name.X}}', net), 'template: :1:7: executing "" at <.Name.X>: can\'t evaluate field X in type string');
  t.is(execError(t, 'ok\n  {{.Foo}}', net), 'template: :2:4: executing "" at <.Foo>: can\'t evaluate field Foo in type object');
  t.is(execError(t, '{{join .Name ","}}', net), 'template: :1:7: executing "" at <.Name>: wrong type for value; expected []string; got string');
  t.is(execError(t, '{{index .IPAM.Config 5}}', net), 'template: :1:2: executing "" at <index .IPAM.Config 5>: error calling index: index out of range: 5');
  t.is(execError(t, '{{join .IPAM.Config}}', net), 'template: :1:2: executing "" at <join .IPAM.Config>: wrong number of args for join: want 2 got 1');
  // Go reports a field chain at its second field.
  t.is(execError(t, '{{.Labels.env "x"}}', net), 'template: :1:9: executing "" at <.Labels.env>: env is not a method but has arguments');
  t.is(execError(t, '{{.Name "x"}}', net), 'template: :1:2: executing "" at <.Name>: Name has arguments but cannot be invoked as function');
  t.is(execError(t, '{{.A.B}}', { A: null }), 'template: :1:4: executing "" at <.A.B>: nil pointer evaluating interface {}.B');
  t.is(execError(t, '{{range .Name}}{{end}}', net), 'template: :1:8: executing "" at <.Name>: range can\'t iterate over web');
  t.is(execError(t, '{{eq .Name 1}}', net), 'template: :1:2: executing "" at <eq .Name 1>: error calling eq: incompatible types for comparison');
  t.is(
    execError(t, '{{.Label}}', rows[0]),
    'template: :1:2: executing "" at <.Label>: wrong number of args for Label: want 1 got 0',
  );
  const failing = { Boom: () => { throw new Error('no such label'); } };
  t.is(execError(t, '{{.Boom}}', failing), 'template: :1:2: executing "" at <.Boom>: error calling Boom: no such label');
});

test('a parsed template can be executed many times', (t) => {
  const template = parseTemplate('{{.Name}}');
  t.deepEqual(rows.map((row) => template.execute(row)), ['web', 'backend-overlay']);
});

// --- formatRows -----------------------------------------------------------

test('table: header from the headers map, columns aligned like docker (minwidth 10, padding 3)', (t) => {
  const out = formatRows('table {{.Name}}\\t{{.Driver}}', rows, { headers: HEADERS });
  t.is(out, ['NAME              DRIVER', 'web               bridge', 'backend-overlay   overlay', ''].join('\n'));
});

test('table: real tabs, short columns padded to the minimum width, missing header fields', (t) => {
  const out = formatRows('table {{.ID}}\t{{.Scope}}\t{{.Internal}}\t{{.Label "env"}}', rows, {
    headers: { ID: 'NETWORK ID', Scope: 'SCOPE' },
  });
  // A header field the map lacks prints <no value>; the method call with an argument ends the header, as in docker.
  t.is(
    out,
    [
      'NETWORK ID     SCOPE     <no value>   ',
      '3f2a9c1b7d4e   local     false        prod',
      '0b1c2d3e4f5a   swarm     true         ',
      '',
    ].join('\n'),
  );
});

test('table: header functions keep the header text; pad still applies', (t) => {
  const out = formatRows('table {{upper .Name}}\\t{{json .Driver}}\\t{{pad .Scope 1 0}}', rows.slice(0, 1), { headers: HEADERS });
  t.is(out, 'NAME      DRIVER      SCOPE\nWEB       "bridge"    local\n');
});

test('table with no rows prints the header only', (t) => {
  t.is(formatRows('table {{.Name}}\\t{{.Driver}}', [], { headers: HEADERS }), 'NAME      DRIVER\n');
});

test('empty format and bare "table" use the default table', (t) => {
  const expected = [
    'NETWORK ID     NAME              DRIVER    SCOPE',
    '3f2a9c1b7d4e   web               bridge    local',
    '0b1c2d3e4f5a   backend-overlay   overlay   swarm',
    '',
  ].join('\n');
  t.is(formatRows('', rows, { defaultTable: DEFAULT_TABLE, headers: HEADERS }), expected);
  t.is(formatRows('table', rows, { defaultTable: DEFAULT_TABLE, headers: HEADERS }), expected);
});

test('minWidth can be set for the older docker layout', (t) => {
  const out = formatRows('table {{.Name}}\\t{{.Driver}}', rows.slice(0, 1), { headers: HEADERS, minWidth: 20 });
  t.is(out, 'NAME                DRIVER\nweb                 bridge\n');
});

test('plain formats: one line per row, backslash-t becomes a tab, no alignment', (t) => {
  t.is(formatRows('{{.Name}}', rows), 'web\nbackend-overlay\n');
  t.is(formatRows('{{.Name}}\\t{{.Driver}}', rows), 'web\tbridge\nbackend-overlay\toverlay\n');
  t.is(formatRows('  {{.ID}}: {{.Driver}}  ', rows), '3f2a9c1b7d4e: bridge\n0b1c2d3e4f5a: overlay\n');
  t.is(formatRows('{{.Name}}', []), '');
});

test('json shorthand prints each row as one JSON line', (t) => {
  const plain = [
    { ID: '3f2a9c1b7d4e', Labels: 'env=prod', Name: 'web' },
    { ID: '0b1c2d3e4f5a', Labels: '', Name: 'backend' },
  ];
  t.is(
    formatRows('json', plain),
    '{"ID":"3f2a9c1b7d4e","Labels":"env=prod","Name":"web"}\n{"ID":"0b1c2d3e4f5a","Labels":"","Name":"backend"}\n',
  );
});

test('formatRows errors are worded as docker prints them', (t) => {
  const parse = t.throws(() => formatRows('table {{.Name', rows), { instanceOf: InvalidArgument });
  t.is(parse?.message, 'template parsing error: template: :1: unclosed action');
  const exec = t.throws(() => formatRows('{{.Nope}}', rows), { instanceOf: InvalidArgument });
  t.is(exec?.message, 'template parsing error: template: :1:2: executing "" at <.Nope>: can\'t evaluate field Nope in type NetworkRow');
});

// --- tabwriter ------------------------------------------------------------

test('tabwriter: elastic columns, last cell unpadded', (t) => {
  const writer = new TabWriter(0, 8, 1, '.');
  writer.write('a\tbbb\tc\naaaa\tb\tcc\n');
  t.is(writer.flush(), 'a....bbb.c\naaaa.b...cc\n');
});

test('tabwriter: a line without tabs ends the column block', (t) => {
  const writer = new TabWriter(0, 8, 1, ' ');
  writer.write('aaaaaa\tb\nno tabs here\nc\td\n');
  t.is(writer.flush(), 'aaaaaa b\nno tabs here\nc d\n');
});

test('tabwriter: minimum width, text written in pieces, text after the last newline', (t) => {
  const writer = new TabWriter(6, 1, 2, ' ');
  writer.write('x\ty');
  writer.write('\nlonger\tz\ntail');
  t.is(writer.flush(), 'x       y\nlonger  z\ntail');
  t.is(writer.flush(), '');
});

test('tabwriter: right alignment and tab padding', (t) => {
  const right = new TabWriter(0, 8, 1, ' ', ALIGN_RIGHT);
  right.write('a\tb\t\nccc\td\t\n');
  t.is(right.flush(), '   a b\n ccc d\n');
  const tabs = new TabWriter(0, 8, 1, '\t');
  tabs.write('a\tb\nlong text\tc\n');
  t.is(tabs.flush(), 'a\t\tb\nlong text\tc\n');
});

test('tabwriter: widths count characters, not UTF-16 units', (t) => {
  const writer = new TabWriter(0, 1, 1, ' ');
  writer.write('é🙂\tx\nab\ty\n');
  t.is(writer.flush(), 'é🙂 x\nab y\n');
});
