package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a process the benchmark started; it is only ever stopped by its
// own pid.
type child struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
	// lines receives the child's stdout lines when started with
	// wantLines.
	lines chan string
	stdin io.WriteCloser
}

func startChild(name, logDir string, args, env []string, wantLines bool) (*child, error) {
	c := &child{name: name, log: filepath.Join(logDir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(c.log)
	if err != nil {
		return nil, err
	}
	c.cmd = exec.Command(args[0], args[1:]...)
	c.cmd.Env = append(os.Environ(), env...)
	dieWithParent(c.cmd)
	c.cmd.Stderr = f
	if wantLines {
		out, err := c.cmd.StdoutPipe()
		if err != nil {
			f.Close()
			return nil, err
		}
		if c.stdin, err = c.cmd.StdinPipe(); err != nil {
			f.Close()
			return nil, err
		}
		c.lines = make(chan string, 16)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				fmt.Fprintln(f, sc.Text())
				c.lines <- sc.Text()
			}
			close(c.lines)
		}()
	} else {
		c.cmd.Stdout = f
	}
	if err := c.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		f.Close()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after timeout, to this child only.
func (c *child) stop(timeout time.Duration) {
	if c.exited() {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(timeout):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

func (c *child) tail() string {
	b, _ := os.ReadFile(c.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// next waits for the child's next stdout line with the given prefix.
func (c *child) next(ctx context.Context, prefix string, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				<-c.done
				return "", fmt.Errorf("%s ended (%w) before printing %s:\n%s", c.name, c.err, prefix, c.tail())
			}
			if strings.HasPrefix(line, prefix) {
				return line, nil
			}
		case <-t.C:
			return "", fmt.Errorf("%s printed no %s within %s:\n%s", c.name, prefix, timeout, c.tail())
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// buildBinaries builds nats-server from the module's dependency and the
// worker from cmd/worker, as e2e does.
func buildBinaries(ctx context.Context, dir string) (natsServer, workerBin string, err error) {
	var mu sync.Mutex
	var errs []string
	var wg sync.WaitGroup
	natsServer, workerBin = filepath.Join(dir, "nats-server"), filepath.Join(dir, "worker")
	for _, b := range []struct{ out, pkg string }{
		{natsServer, "github.com/nats-io/nats-server/v2"},
		{workerBin, "github.com/azbilling/worker/cmd/worker"},
	} {
		wg.Go(func() {
			out, err := exec.CommandContext(ctx, "go", "build", "-o", b.out, b.pkg).CombinedOutput()
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("go build %s: %v\n%s", b.pkg, err, out))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return "", "", fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return natsServer, workerBin, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitListening(port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// procStatus is what /proc/<pid>/status says about memory and threads.
type procStatus struct {
	rssKB, hwmKB int64
	threads      int
}

func readStatus(pid int) (procStatus, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procStatus{}, err
	}
	var s procStatus
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			s.rssKB = v
		case "VmHWM:":
			s.hwmKB = v
		case "Threads:":
			s.threads = int(v)
		}
	}
	return s, nil
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports without cgo to ask sysconf.
const clockTicks = 100

// cpuTime returns utime+stime of a process.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// usage is a process's CPU share over an interval, in percent of one core.
type usage struct {
	pct      float64
	interval time.Duration
}

// measureCPU samples the CPU time of pids over d.
func measureCPU(ctx context.Context, d time.Duration, pids ...int) ([]usage, error) {
	before := make([]time.Duration, len(pids))
	for i, p := range pids {
		t, err := cpuTime(p)
		if err != nil {
			return nil, err
		}
		before[i] = t
	}
	start := time.Now()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	el := time.Since(start)
	out := make([]usage, len(pids))
	for i, p := range pids {
		t, err := cpuTime(p)
		if err != nil {
			return nil, err
		}
		out[i] = usage{pct: 100 * (t - before[i]).Seconds() / el.Seconds(), interval: el}
	}
	return out, nil
}
