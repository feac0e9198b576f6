#!/usr/bin/env node
// Mongoose 8 side of meerkat's ODM benchmark: the same in-memory workload as
// bench/bench_odm.c (construct, validate, toObject, hydrate, modify, query
// casting), so `make bench` can print meerkat/Mongoose ratios. No MongoDB
// server is involved: nothing here connects or awaits a database operation.
'use strict';

const { spawnSync } = require('child_process');
const { isDeepStrictEqual } = require('util');

// The memory figure needs gc(); re-run ourselves with --expose-gc if absent.
if (typeof global.gc !== 'function') {
  const r = spawnSync(process.execPath, ['--expose-gc', ...process.execArgv, __filename, ...process.argv.slice(2)],
    { stdio: 'inherit' });
  process.exit(r.status === null ? 1 : r.status);
}

function fail(msg) {
  process.stderr.write(`bench/mongoose: ${msg}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const opts = { n: 100000, json: false, verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') opts.json = true;
    else if (a === '--quick') opts.n = 20000;
    else if (a === '--verbose' || a === '-v') opts.verbose = true;
    else if (a === '--n') {
      const v = argv[++i];
      if (v === undefined || !/^[1-9][0-9]*$/.test(v)) fail(`--n needs a positive integer, got ${v}`);
      opts.n = Number(v);
    } else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: node bench.js [--n N | --quick] [--json] [--verbose]\n');
      process.exit(0);
    } else fail(`unknown argument ${a} (try --help)`);
  }
  return opts;
}

let mongoose;
try {
  mongoose = require('mongoose');
} catch (err) {
  if (err.code === 'MODULE_NOT_FOUND') fail('mongoose is not installed: run npm install in bench/mongoose');
  throw err;
}
if (!/^8\./.test(mongoose.version)) fail(`expected Mongoose 8, found ${mongoose.version} (run npm install in bench/mongoose)`);
const { Schema } = mongoose;
const { BSON } = mongoose.mongo; // the driver's own bson, as used on the wire
const opts = parseArgs(process.argv.slice(2));
const N = opts.n;
const WARMUP = Math.min(2000, N);
const RUNS = 3;

const userSchema = new Schema({
  email: { type: String, required: true, unique: true, lowercase: true, trim: true },
  name: { type: String, required: true, minlength: 2, maxlength: 100 },
  age: { type: Number, min: 0, max: 150 },
  role: { type: String, enum: ['user', 'admin'], default: 'user' },
  tags: [String],
  profile: { avatar: String, bio: { type: String, maxlength: 500 } },
  lastLogin: Date,
}, { timestamps: true });
const User = mongoose.model('User', userSchema);

function check(cond, what) {
  if (!cond) fail(`check failed: ${what}`);
}

// ---- inputs, all built before any timing --------------------------------
const inputs = new Array(N);
const newNames = new Array(N);
const hexIds = new Array(N);
for (let i = 0; i < N; i++) {
  inputs[i] = {
    email: `  User${i}@Example.COM `,
    name: `User ${i}`,
    age: String(20 + (i % 50)),
    tags: ['t' + (i % 7), 'common'],
    profile: { avatar: `https://img.example.com/${i}.png`, bio: `Bio of user ${i}` },
    lastLogin: new Date(1700000000000 + i * 1000).toISOString(),
  };
  newNames[i] = `Renamed ${i}`;
  hexIds[i] = i.toString(16).padStart(24, '0');
}

// ---- timing ---------------------------------------------------------------
// Each phase is run(from, to, state) over docs [from, to). It first warms up
// on a slice, then the best of RUNS full runs counts. prepare() builds untimed
// per-run state (e.g. fresh documents for a phase that mutates them).
const verbose = (label, value) => {
  if (opts.verbose) process.stderr.write(`${label}: ${JSON.stringify(value)}\n`);
};

function timePhase(name, run, prepare = () => null) {
  run(0, WARMUP, prepare(WARMUP));
  const ms = [];
  for (let r = 0; r < RUNS; r++) {
    const state = prepare(N);
    global.gc();
    const t0 = process.hrtime.bigint();
    run(0, N, state);
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  verbose(`${name}: ms per run`, ms.map((t) => Math.round(t)));
  return Math.round(N / (Math.min(...ms) / 1e3));
}

const phases = {};
let docs;

// Each run starts from an empty array so the previous run's documents are
// garbage before gc(), not collected during the next timed run.
phases.construct = timePhase('construct', (from, to) => {
  for (let i = from; i < to; i++) docs[i] = new User(inputs[i]);
}, () => { docs = new Array(N); });
check(docs[0].email === 'user0@example.com' && docs[0].age === 20 && docs[0].role === 'user',
  'construct casts email (trim+lowercase), age to number, role default');

// What the driver hands back for a saved user (input of the hydrate phases):
// a BSON round trip of the document plus the fields save() adds.
const saved = new Date(1710000000000);
const stored = docs.map((doc) => BSON.deserialize(BSON.serialize(
  { ...doc.toObject({ depopulate: true }), createdAt: saved, updatedAt: saved, __v: 0 })));
check(stored[0]._id instanceof mongoose.Types.ObjectId && stored[0].lastLogin instanceof Date &&
  stored[0].age === 20 && stored[0].email === 'user0@example.com', 'stored objects hold ObjectId, Date, number');

phases.validate = timePhase('validate', (from, to) => {
  for (let i = from; i < to; i++) {
    const err = docs[i].validateSync();
    if (err !== undefined) fail(`validateSync() on doc ${i} returned ${err}`);
  }
});

let objs;
phases.toObject = timePhase('toObject', (from, to) => {
  for (let i = from; i < to; i++) objs[i] = docs[i].toObject();
}, () => { objs = new Array(N); });
check(objs[0].lastLogin instanceof Date && Array.isArray(objs[0].tags) && !(objs[0] instanceof User),
  'toObject gives a plain object with Date and array');
docs = objs = null;

let hydrated;
phases.hydrate = timePhase('hydrate', (from, to) => {
  for (let i = from; i < to; i++) hydrated[i] = User.hydrate(stored[i]);
}, () => { hydrated = new Array(N); });
check(!hydrated[0].isNew && hydrated[0]._id.equals(stored[0]._id) && hydrated[0].age === 20,
  'hydrate gives a non-new doc with the stored values');
hydrated = null;

// modify mutates its documents, so each run gets freshly hydrated ones.
const hydrateSlice = (count) => stored.slice(0, count).map((o) => User.hydrate(o));
let firstChanges;
phases.modify = timePhase('modify', (from, to, fresh) => {
  for (let i = from; i < to; i++) {
    const doc = fresh[i];
    doc.name = newNames[i];
    doc.age = 30 + (i % 40);
    const changes = doc.getChanges();
    if (i === 0) firstChanges = changes;
  }
}, hydrateSlice);
verbose('modify: doc 0 getChanges()', firstChanges);
check(isDeepStrictEqual(firstChanges, { $set: { name: 'Renamed 0', age: 30 } }),
  `getChanges() on doc 0 is { $set: { name, age } }, got ${JSON.stringify(firstChanges)}`);

let firstFilter;
phases.castFilter = timePhase('castFilter', (from, to) => {
  for (let i = from; i < to; i++) {
    const filter = User.find({
      _id: hexIds[i],
      age: { $gte: String(18 + (i % 10)) },
      role: { $in: ['user', 'admin'] },
      'profile.bio': { $exists: true },
      lastLogin: { $lt: '2025-01-01' },
    }).cast(User);
    if (i === 0) firstFilter = filter;
  }
});
verbose('castFilter: i=0', firstFilter);
check(firstFilter._id instanceof mongoose.Types.ObjectId && firstFilter.age.$gte === 18 &&
  firstFilter.lastLogin.$lt instanceof Date, 'castFilter casts _id to ObjectId, age to number, lastLogin to Date');

// No public API casts an update without executing it; Query#_castUpdate is
// what updateOne's exec runs, with the query's own strict/upsert options.
let firstUpdate;
phases.castUpdate = timePhase('castUpdate', (from, to) => {
  for (let i = from; i < to; i++) {
    const q = User.updateOne({ email: 'X@Y.COM' }, { name: 'N' + i, $inc: { age: '1' }, $push: { tags: 't' } });
    const update = q._castUpdate(q._update);
    if (i === 0) firstUpdate = update;
  }
});
verbose('castUpdate: i=0', firstUpdate);
check(isDeepStrictEqual(firstUpdate, { $push: { tags: 't' }, $inc: { age: 1 }, $set: { name: 'N0' } }),
  `castUpdate moves name into $set and casts $inc to a number, got ${JSON.stringify(firstUpdate)}`);

// ---- memory ---------------------------------------------------------------
// Bytes one hydrated document keeps alive, its values included: each doc is
// hydrated from a freshly deserialized BSON buffer (as the driver would do),
// so the temporary plain object becomes garbage and only what the document
// retains is counted. JS heap only: the 12 ObjectId bytes live in Node's
// shared Buffer pool, whose release after gc() is too lazy to measure.
function memoryPerDoc() {
  const buffers = stored.map((o) => BSON.serialize(o));
  const kept = new Array(N).fill(null);
  const usage = () => {
    global.gc();
    global.gc();
    return process.memoryUsage();
  };
  const before = usage();
  for (let i = 0; i < N; i++) kept[i] = User.hydrate(BSON.deserialize(buffers[i]));
  const after = usage();
  check(kept[N - 1].name === `User ${N - 1}`, 'memory phase hydrated every document');
  return Math.round((after.heapUsed - before.heapUsed) / N);
}
const hydratedBytes = memoryPerDoc();

let bsonTotal = 0;
for (let i = 0; i < N; i++) bsonTotal += BSON.calculateObjectSize(stored[i]);
const bsonBytes = Math.round(bsonTotal / N);

// ---- report ---------------------------------------------------------------
const result = { mongoose: mongoose.version, node: process.version, n: N, phases, hydratedBytes, bsonBytes };
if (opts.json) {
  process.stdout.write(JSON.stringify(result) + '\n');
} else {
  const lines = [`Mongoose ${mongoose.version} on Node ${process.version}, N=${N} (best of ${RUNS})`,
    `${'phase'.padEnd(12)}${'docs/s'.padStart(12)}${'us/doc'.padStart(10)}`];
  for (const [name, rate] of Object.entries(phases)) {
    lines.push(`${name.padEnd(12)}${rate.toLocaleString('en-US').padStart(12)}${(1e6 / rate).toFixed(2).padStart(10)}`);
  }
  lines.push(`hydratedBytes ${hydratedBytes} bytes/doc`, `bsonBytes     ${bsonBytes} bytes/doc`);
  process.stdout.write(lines.join('\n') + '\n');
}
