# The R kernel runner: cells run in one R process. Runs in the sandbox only.
#
# Started as `sh -c 'exec Rscript r_runner.R 3<&0 4>&1 5>&2 0</dev/null'`: requests arrive on
# fd 3, protocol frames go to fd 4 (the end-of-cell sync frame to fd 5), user code writes to
# stdout and stderr as usual. See llm_sandbox/kernels/protocol.py for the wire format. Needs R
# 3.5+ and nothing else: JSON and base64 are encoded here (jsonlite is not required).
#
# * Each top-level expression of a cell is evaluated in the global environment with
#   withVisible(); visible values are printed as at the R prompt (print(), show() for S4).
#   The last expression's printed value comes back as an execute_result (text/plain) instead
#   of on stdout. Warnings are printed after each expression as R's prompt prints them.
#   An error stops the cell and becomes an error message; the kernel keeps its state.
# * Plots: the default device is a PNG file per page (700 x 500 px); devices a cell opened
#   that way are closed at its end and each page comes back as an image/png display_data.
#   Base graphics, lattice and ggplot2 (printed, or left as the last value) all draw there.
# * display(x), display_html(), display_markdown(), display_latex(), display_svg(),
#   display_json() (a JSON text), display_png(file) send display_data.
# * R cannot read requests while it evaluates, so a helper (sh, started through pipe()) is
#   the only reader of fd 3: it forwards requests to R line by line and, on an interrupt,
#   sends SIGINT to R and then to every process R started (from /proc/<pid>/task/*/children
#   where the kernel has it, else from a scan of /proc/*/stat). R turns SIGINT into an `interrupt`
#   condition; interrupts that arrive between cells are absorbed before the next one.
local({
  K <- new.env()
  K$count <- 0L
  K$cell <- ""
  K$devices <- integer(0)
  K$device_seq <- 0L
  K$plot_dir <- file.path(tempdir(), "llm-kernel-plots")
  dir.create(K$plot_dir, showWarnings = FALSE)
  K$chunk <- 4000L - 6L - 32L - 8L

  K$helper_script <- paste(
    "trap '' INT PIPE; exec 4>&- 5>&- 2>/dev/null; rpid=$1; echo $$",
    "desc() {",
    "  if [ -r /proc/$1/task/$1/children ]; then local t kids k",
    "    for t in /proc/$1/task/*/children; do",
    "      kids=; read -r kids < \"$t\"; for k in $kids; do echo $k; desc $k; done; done",
    "  else",
    "    pairs=$(for f in /proc/[0-9]*/stat; do",
    "      read -r l < \"$f\" && { r=${l##*) }; set -- $r; echo \"${l%% *}:$2\"; }; done)",
    "    all=\" $1 \"; more=1",
    "    while [ $more = 1 ]; do more=0; for pq in $pairs; do p=${pq%%:*}; q=${pq#*:}",
    "      case \"$all\" in *\" $q \"*) case \"$all\" in *\" $p \"*) ;;",
    "        *) all=\"$all$p \"; more=1;; esac;; esac; done; done",
    "    echo ${all# $1 }",
    "  fi; }",
    "while IFS= read -r line <&3; do case $line in",
    "  interrupt*) kill -INT $rpid; for p in $(desc $rpid); do [ $p = $$ ] || kill -INT $p; done;;",
    "  *) printf '%s\\n' \"$line\" || exit 0;;",
    "esac; done",
    sep = "\n"
  )

  K$helper_pid <- NA_integer_
  K$start_helper <- function() {
    # A helper whose pipe was closed (closeAllConnections()) must not keep reading fd 3.
    if (!is.na(K$helper_pid)) tools::pskill(K$helper_pid, tools::SIGKILL)
    script <- file.path(tempdir(), "llm-kernel-helper.sh")
    writeLines(K$helper_script, script)
    K$control_command <- sprintf("sh %s %d &", shQuote(script), Sys.getpid())
    K$control <- pipe(K$control_command, open = "r")
    K$helper_pid <- as.integer(readLines(K$control, n = 1L))
  }

  # --- JSON and base64 ------------------------------------------------------------------------
  K$json_str <- function(s) {
    s <- as.character(s)
    s[is.na(s)] <- "NA"
    s <- enc2utf8(s)
    bad <- !validUTF8(s)
    if (any(bad)) s[bad] <- iconv(s[bad], "UTF-8", "UTF-8", sub = "?")
    s <- gsub("\\", "\\\\", s, fixed = TRUE)
    s <- gsub("\"", "\\\"", s, fixed = TRUE)
    s <- gsub("\n", "\\n", s, fixed = TRUE)
    s <- gsub("\r", "\\r", s, fixed = TRUE)
    s <- gsub("\t", "\\t", s, fixed = TRUE)
    ctl <- grepl("[\001-\037]", s, useBytes = TRUE)
    if (any(ctl)) {
      s[ctl] <- vapply(s[ctl], function(x) {
        cps <- utf8ToInt(x)
        paste(vapply(cps, function(c) {
          if (c < 32L) sprintf("\\u%04x", c) else intToUtf8(c)
        }, ""), collapse = "")
      }, "")
    }
    paste0("\"", s, "\"")
  }

  K$json <- function(x) {
    if (is.null(x)) return("null")
    if (inherits(x, "llm_json")) return(as.character(x))
    if (is.list(x)) {
      if (length(x) == 0L) return(if (is.null(names(x))) "[]" else "{}")
      items <- vapply(x, K$json, "")
      if (!is.null(names(x))) {
        return(paste0("{", paste0(K$json_str(names(x)), ":", items, collapse = ","), "}"))
      }
      return(paste0("[", paste(items, collapse = ","), "]"))
    }
    if (is.character(x) || is.factor(x)) {
      v <- K$json_str(x)
    } else if (is.logical(x)) {
      v <- ifelse(is.na(x), "null", ifelse(x, "true", "false"))
    } else if (is.numeric(x)) {
      v <- ifelse(is.finite(x), format(x, digits = 15, scientific = FALSE, trim = TRUE), "null")
    } else {
      v <- K$json_str(paste(format(x), collapse = " "))
    }
    if (length(v) == 1L) v else paste0("[", paste(v, collapse = ","), "]")
  }

  K$b64 <- function(r) {
    chars <- c(LETTERS, letters, 0:9, "+", "/")
    n <- length(r)
    if (n == 0L) return("")
    pad <- (3L - n %% 3L) %% 3L
    v <- c(as.integer(r), rep(0L, pad))
    m <- matrix(v, nrow = 3L)
    w <- m[1L, ] * 65536L + m[2L, ] * 256L + m[3L, ]
    idx <- rbind(w %/% 262144L, (w %/% 4096L) %% 64L, (w %/% 64L) %% 64L, w %% 64L)
    out <- chars[idx + 1L]
    if (pad > 0L) out[(length(out) - pad + 1L):length(out)] <- "="
    paste(out, collapse = "")
  }

  # --- the wire -------------------------------------------------------------------------------
  K$open_wire <- function() {
    K$frames <- file("/dev/fd/4", open = "wb", raw = TRUE)
    K$sync <- file("/dev/fd/5", open = "wb", raw = TRUE)
  }

  K$valid <- function(con, description) {
    # closeAllConnections() destroys our connections, and a later connection may reuse the
    # number of one: check that it is still open and still ours.
    tryCatch(isOpen(con) && identical(summary(con)$description, description),
             error = function(e) FALSE)
  }

  K$send <- function(msg, sync = FALSE) {
    if (!K$valid(K$frames, "/dev/fd/4") || !K$valid(K$sync, "/dev/fd/5")) K$open_wire()
    con <- if (sync) K$sync else K$frames
    try(flush(stdout()), silent = TRUE)
    try(flush(stderr()), silent = TRUE)
    data <- charToRaw(enc2utf8(K$json(msg)))
    n <- length(data)
    start <- 1L
    repeat {
      end <- min(start + K$chunk - 1L, n)
      chunk <- if (n > 0L) data[start:end] else raw(0)
      flag <- if (end >= n) "." else "+"
      header <- charToRaw(sprintf("%s%s:%04x:", K$mark, flag, length(chunk)))
      writeBin(c(as.raw(0L), header, chunk), con)
      flush(con)
      if (end >= n) break
      start <- end + 1L
    }
  }

  # --- requests -------------------------------------------------------------------------------
  K$read_request <- function() {
    if (!K$valid(K$control, K$control_command)) K$start_helper()
    line <- readLines(K$control, n = 1L, warn = FALSE, encoding = "bytes")
    if (length(line) == 0L) return(NULL)
    tab <- regexpr("\t", line, fixed = TRUE, useBytes = TRUE)
    head <- if (tab > 0L) substr(line, 1L, tab - 1L) else line
    payload <- if (tab > 0L) substring(line, tab + 1L) else ""
    for (pair in list(c("%00", ""), c("%0D", "\r"), c("%0A", "\n"), c("%25", "%"))) {
      payload <- gsub(pair[1], pair[2], payload, fixed = TRUE, useBytes = TRUE)
    }
    Encoding(payload) <- "UTF-8"
    parts <- strsplit(head, " ", fixed = TRUE)[[1]]
    fields <- list()
    for (p in parts[-1]) {
      eq <- regexpr("=", p, fixed = TRUE)
      if (eq > 0L) fields[[substr(p, 1L, eq - 1L)]] <- substring(p, eq + 1L)
    }
    list(kind = parts[1], fields = fields, payload = payload)
  }

  # --- plots ----------------------------------------------------------------------------------
  K$open_device <- function(...) {
    K$device_seq <- K$device_seq + 1L
    file <- file.path(K$plot_dir, sprintf("c%06d-d%04d-%%03d.png", K$count, K$device_seq))
    grDevices::png(filename = file, width = 700, height = 500, res = 100)
    K$devices <- c(K$devices, grDevices::dev.cur())
    invisible(NULL)
  }

  K$flush_plots <- function() {
    for (d in K$devices) {
      if (d %in% grDevices::dev.list()) try(grDevices::dev.off(d), silent = TRUE)
    }
    K$devices <- integer(0)
    files <- sort(list.files(K$plot_dir, pattern = "\\.png$", full.names = TRUE))
    for (f in files) {
      size <- file.info(f)$size
      if (!is.na(size) && size > 0) {
        data <- readBin(f, "raw", n = size)
        K$display(list("image/png" = K$b64(data), "text/plain" = "<plot>"))
      }
      unlink(f)
    }
  }

  # --- display --------------------------------------------------------------------------------
  K$display <- function(bundle) {
    K$send(list(type = "display_data", id = K$cell, data = bundle,
                metadata = structure(list(), names = character(0)),
                transient = structure(list(), names = character(0))))
    invisible(NULL)
  }

  K$text <- function(x) paste(x, collapse = "\n")

  K$api <- list(
    display = function(x) K$display(list("text/plain" = K$text(utils::capture.output(print(x))))),
    display_html = function(x) K$display(list("text/html" = K$text(x))),
    display_markdown = function(x) K$display(list("text/markdown" = K$text(x))),
    display_latex = function(x) K$display(list("text/latex" = K$text(x))),
    display_svg = function(x) K$display(list("image/svg+xml" = K$text(x))),
    display_json = function(x) {
      K$display(list("application/json" = structure(K$text(x), class = "llm_json"),
                     "text/plain" = K$text(x)))
    },
    display_png = function(file) {
      K$display(list("image/png" = K$b64(readBin(file, "raw", n = file.info(file)$size))))
    }
  )

  # --- running cells --------------------------------------------------------------------------
  K$print_value <- function(value) {
    if (isS4(value)) methods::show(value) else print(value)
  }

  K$show_value <- function(value, last) {
    if (!last) return(K$print_value(value))
    text <- utils::capture.output(K$print_value(value))
    if (length(text) > 0L) {
      K$send(list(type = "execute_result", id = K$cell, execution_count = K$count,
                  data = list("text/plain" = K$text(text)),
                  metadata = structure(list(), names = character(0))))
    }
  }

  K$own_call <- quote(eval(expr, envir = globalenv()))

  K$call_of <- function(condition) {
    # The condition's call as the R prompt shows it (ours, the evaluation of the cell, is none).
    call <- conditionCall(condition)
    if (identical(call, K$own_call)) NULL else call
  }

  K$warnings_text <- function(ws) {
    one <- function(w) {
      call <- K$call_of(w)
      msg <- conditionMessage(w)
      if (is.null(call)) msg else paste0("In ", paste(deparse(call, nlines = 1L), collapse = ""), " : ", msg)
    }
    texts <- vapply(ws, one, "")
    if (length(texts) == 1L) return(paste0("Warning message:\n", texts, "\n"))
    paste0("Warning messages:\n", paste0(seq_along(texts), ": ", texts, collapse = "\n"), "\n")
  }

  K$error_message <- function(e, calls) {
    call <- K$call_of(e)
    msg <- conditionMessage(e)
    line <- if (is.null(call)) paste0("Error: ", msg) else
      paste0("Error in ", paste(deparse(call, nlines = 1L), collapse = ""), " : ", msg)
    traceback <- list(line)
    user <- K$user_calls(calls)
    if (length(user) > 1L) {
      names <- vapply(user, function(cl) paste(deparse(cl[[1]], nlines = 1L), collapse = ""), "")
      traceback[[2]] <- paste("Calls:", paste(names, collapse = " -> "))
    }
    list(type = "error", id = K$cell, ename = class(e)[1], evalue = msg, traceback = traceback)
  }

  K$user_calls <- function(calls) {
    # The frames below our evaluation of the cell's expression, without R's own handlers.
    if (is.null(calls)) return(list())
    marks <- which(vapply(calls, function(cl) identical(cl, K$own_call), TRUE))
    if (length(marks) == 0L) return(list())
    user <- calls[-seq_len(marks[length(marks)])]
    drop <- c(".handleSimpleError", "h", "stop", "signalCondition", "doTryCatch")
    Filter(function(cl) !(is.name(cl[[1]]) && as.character(cl[[1]]) %in% drop), user)
  }

  K$evaluate <- function(expr) withVisible(eval(expr, envir = globalenv()))

  K$eval_one <- function(expr, last) {
    ws <- list()
    calls <- NULL
    out <- tryCatch(
      withCallingHandlers({
        res <- K$evaluate(expr)
        if (res$visible) K$show_value(res$value, last)
        NULL
      },
      warning = function(w) {
        ws[[length(ws) + 1L]] <<- w
        invokeRestart("muffleWarning")
      },
      error = function(e) calls <<- sys.calls()),
      error = function(e) K$error_message(e, calls),
      interrupt = function(i) {
        list(type = "error", id = K$cell, ename = "interrupt", evalue = "interrupted",
             traceback = list("interrupted (SIGINT)"))
      }
    )
    if (length(ws) > 0L) cat(K$warnings_text(ws), file = stderr())
    out
  }

  K$run_cell <- function(id, code) {
    K$count <- K$count + 1L
    K$cell <- id
    interrupted <- function(i) {
      K$send(list(type = "error", id = id, ename = "interrupt", evalue = "interrupted",
                  traceback = list("interrupted (SIGINT)")))
      "error"
    }
    status <- tryCatch(K$run_exprs(id, code), interrupt = interrupted)
    suspendInterrupts({
      # The cell may have closed our connections (closeAllConnections()): replace the helper
      # now, before the reply, while the host sends nothing it could read and lose.
      if (!K$valid(K$control, K$control_command)) K$start_helper()
      tryCatch(K$flush_plots(), error = function(e) {
        cat("plot capture failed:", conditionMessage(e), "\n", file = stderr())
      })
      K$send(list(type = "execute_reply", id = id, status = status, execution_count = K$count))
      K$send(list(type = "sync", id = id), sync = TRUE)
      K$cell <- ""
    })
  }

  K$run_exprs <- function(id, code) {
    status <- "ok"
    exprs <- tryCatch(parse(text = code, keep.source = FALSE), error = function(e) e)
    if (inherits(exprs, "error")) {
      status <- "error"
      K$send(list(type = "error", id = id, ename = "ParseError",
                  evalue = conditionMessage(exprs),
                  traceback = list(paste0("Error: ", conditionMessage(exprs)))))
    } else {
      n <- length(exprs)
      for (i in seq_len(n)) {
        failure <- K$eval_one(exprs[[i]], i == n)
        if (!is.null(failure)) {
          status <- "error"
          K$send(failure)
          break
        }
      }
    }
    status
  }

  K$main <- function() {
    K$start_helper()
    first <- K$read_request()
    nonce <- if (is.null(first)) "" else first$fields$nonce
    if (is.null(first) || first$kind != "start" || is.null(nonce) || !grepl("^[0-9a-f]{32}$", nonce)) {
      cat("llm-sandbox kernel: expected a start request on fd 3\n", file = stderr())
      quit(save = "no", status = 2L)
    }
    K$mark <- paste0("llmk:", nonce, ":")
    K$open_wire()
    options(device = K$open_device)
    api <- new.env()
    for (name in names(K$api)) assign(name, K$api[[name]], envir = api)
    attach(api, name = "llm:kernel", warn.conflicts = FALSE)
    K$send(list(type = "ready", protocol = 1L, language = "r",
                language_version = paste(R.version$major, R.version$minor, sep = "."),
                implementation = R.version.string, pid = Sys.getpid()))
    repeat {
      req <- NULL
      tryCatch(suspendInterrupts(req <- K$read_request()), interrupt = function(i) NULL)
      # An interrupt that came between cells is pending: let it fire here, harmlessly.
      tryCatch(Sys.sleep(0), interrupt = function(i) NULL)
      if (is.null(req)) break
      if (identical(req$kind, "execute")) {
        tryCatch(K$run_cell(if (is.null(req$fields$id)) "0" else req$fields$id, req$payload),
                 interrupt = function(i) NULL)
      } else if (identical(req$kind, "shutdown")) {
        break
      }
    }
    quit(save = "no", status = 0L)
  }

  K$main()
})
