/* meerkat — Mongoose for C. Umbrella header. */
#ifndef MEERKAT_H
#define MEERKAT_H

#include <meerkat/error.h>
#include <meerkat/json.h>
#include <meerkat/engine.h>
#include <meerkat/schema.h>
#include <meerkat/odm.h>
#include <meerkat/query.h>

#define MEERKAT_VERSION "0.1.0"

#endif
